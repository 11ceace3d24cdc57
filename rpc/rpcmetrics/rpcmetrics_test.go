package rpcmetrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agora-sched/agora/rpc/rpcmetrics"
)

const (
	echo  = "/test.v1.Echo/Say"
	count = "/test.v1.Echo/Count"
)

// server answers Say with the input, or InvalidArgument for "bad"; Count
// streams n strings back.
func server(t *testing.T, ic *rpcmetrics.Interceptor) string {
	mux := http.NewServeMux()
	opt := connect.WithInterceptors(ic)
	mux.Handle(echo, connect.NewUnaryHandler(echo, func(_ context.Context, r *connect.Request[wrapperspb.StringValue]) (*connect.Response[wrapperspb.StringValue], error) {
		if r.Msg.GetValue() == "bad" {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("bad input"))
		}
		return connect.NewResponse(r.Msg), nil
	}, opt))
	mux.Handle(count, connect.NewServerStreamHandler(count, func(_ context.Context, r *connect.Request[wrapperspb.Int32Value], s *connect.ServerStream[wrapperspb.StringValue]) error {
		if r.Msg.GetValue() < 0 {
			return connect.NewError(connect.CodeOutOfRange, errors.New("negative"))
		}
		for range r.Msg.GetValue() {
			if err := s.Send(wrapperspb.String("x")); err != nil {
				return err
			}
		}
		return nil
	}, opt))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCountsUnaryAndStreamsOnBothSides(t *testing.T) {
	srvIC := rpcmetrics.New(rpcmetrics.Server, nil)
	cliIC := rpcmetrics.New(rpcmetrics.Client, nil)
	url := server(t, srvIC)
	ctx := context.Background()
	say := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](http.DefaultClient, url+echo, connect.WithInterceptors(cliIC))
	cnt := connect.NewClient[wrapperspb.Int32Value, wrapperspb.StringValue](http.DefaultClient, url+count, connect.WithInterceptors(cliIC))

	for range 3 {
		if _, err := say.CallUnary(ctx, connect.NewRequest(wrapperspb.String("hi"))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := say.CallUnary(ctx, connect.NewRequest(wrapperspb.String("bad"))); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad call: %v", err)
	}
	st, err := cnt.CallServerStream(ctx, connect.NewRequest(wrapperspb.Int32(4)))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for st.Receive() {
		got++
	}
	if err := st.Err(); err != nil || got != 4 {
		t.Fatalf("stream: %d messages, %v", got, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = cnt.CallServerStream(ctx, connect.NewRequest(wrapperspb.Int32(-1)))
	if err != nil {
		t.Fatal(err)
	}
	for st.Receive() {
	}
	if connect.CodeOf(st.Err()) != connect.CodeOutOfRange {
		t.Fatalf("negative stream: %v", st.Err())
	}
	_ = st.Close()

	for _, ic := range []*rpcmetrics.Interceptor{srvIC, cliIC} {
		side := "server"
		if ic == cliIC {
			side = "client"
		}
		req := func(method, kind, code string) float64 {
			v, err := metricValue(ic, "agora_rpc_"+side+"_requests_total", map[string]string{"service": "test.v1.Echo", "method": method, "type": kind, "code": code})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		for _, c := range []struct {
			method, kind, code string
			want               float64
		}{
			{"Say", "unary", "ok", 3},
			{"Say", "unary", "invalid_argument", 1},
			{"Count", "server_stream", "ok", 1},
			{"Count", "server_stream", "out_of_range", 1},
		} {
			if got := req(c.method, c.kind, c.code); got != c.want {
				t.Errorf("%s %s %s %s: %v, want %v", side, c.method, c.kind, c.code, got, c.want)
			}
		}
		dir := "sent"
		if side == "client" {
			dir = "received"
		}
		if v, err := metricValue(ic, "agora_rpc_"+side+"_stream_messages_total", map[string]string{"service": "test.v1.Echo", "method": "Count", "direction": dir}); err != nil || v != 4 {
			t.Errorf("%s stream messages %s: %v %v, want 4", side, dir, v, err)
		}
		if v, err := metricValue(ic, "agora_rpc_"+side+"_in_flight", map[string]string{"service": "test.v1.Echo", "method": "Count", "type": "server_stream"}); err != nil || v != 0 {
			t.Errorf("%s in flight after the streams ended: %v %v, want 0", side, v, err)
		}
		if n, err := histogramCount(ic, "agora_rpc_"+side+"_request_duration_seconds"); err != nil || n != 6 {
			t.Errorf("%s duration observations: %d %v, want 6", side, n, err)
		}
	}
}

func TestSplitAndCode(t *testing.T) {
	if s, m := rpcmetrics.Split("/agora.v1.SchedulerService/Subscribe"); s != "agora.v1.SchedulerService" || m != "Subscribe" {
		t.Fatalf("split: %q %q", s, m)
	}
	if s, m := rpcmetrics.Split("odd"); s != "" || m != "odd" {
		t.Fatalf("split odd: %q %q", s, m)
	}
	if rpcmetrics.Code(nil) != "ok" || rpcmetrics.Code(connect.NewError(connect.CodeUnavailable, errors.New("x"))) != "unavailable" ||
		rpcmetrics.Code(context.Canceled) != "canceled" {
		t.Fatal("codes")
	}
}

// metricValue gathers c and returns the value of the series name with
// exactly the labels want (counter, gauge or untyped).
func metricValue(c prometheus.Collector, name string, want map[string]string) (float64, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return 0, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), nil
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no series %s%v", name, want)
}

// histogramCount sums the sample counts of every series of histogram name.
func histogramCount(c prometheus.Collector, name string) (uint64, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return 0, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n, nil
}
