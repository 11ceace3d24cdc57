package rpcmetrics

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// Side says which end of a call an Interceptor sits on.
type Side string

// Sides.
const (
	// Server is the handler side (a master).
	Server Side = "server"
	// Client is the calling side (an agent, a framework, the CLI).
	Client Side = "client"
)

// Buckets are the latency buckets of the duration histograms, in seconds:
// sub-millisecond local calls up to minute-long polls.
var Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Interceptor is a connect.Interceptor that counts and times calls, and a
// prometheus.Collector of what it measured. Safe for concurrent use.
type Interceptor struct {
	side     Side
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	messages *prometheus.CounterVec
	now      func() time.Time
}

var _ connect.Interceptor = (*Interceptor)(nil)
var _ prometheus.Collector = (*Interceptor)(nil)

// New returns an Interceptor for side; constLabels (may be nil) are added
// to every series (a master adds master="id").
func New(side Side, constLabels prometheus.Labels) *Interceptor {
	who := "handled by this master"
	if side == Client {
		who = "made by this process (each attempt)"
	}
	name := func(s string) string { return "rpc_" + string(side) + "_" + s }
	return &Interceptor{
		side: side,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agora", Name: name("requests_total"), ConstLabels: constLabels,
			Help: "Connect RPCs " + who + ", by service, method, stream type and Connect code (\"ok\" on success); a stream counts when it ends.",
		}, []string{"service", "method", "type", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "agora", Name: name("request_duration_seconds"), ConstLabels: constLabels, Buckets: Buckets,
			Help: "Latency of Connect RPCs " + who + " (a stream: its lifetime), by service, method, stream type and Connect code.",
		}, []string{"service", "method", "type", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "agora", Name: name("in_flight"), ConstLabels: constLabels,
			Help: "Connect RPCs " + who + " in progress (open streams included).",
		}, []string{"service", "method", "type"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agora", Name: name("stream_messages_total"), ConstLabels: constLabels,
			Help: "Messages on streaming Connect RPCs " + who + ", by direction (sent or received, from this side).",
		}, []string{"service", "method", "direction"}),
		now: time.Now,
	}
}

// Describe implements prometheus.Collector.
func (i *Interceptor) Describe(ch chan<- *prometheus.Desc) {
	i.requests.Describe(ch)
	i.duration.Describe(ch)
	i.inFlight.Describe(ch)
	i.messages.Describe(ch)
}

// Collect implements prometheus.Collector.
func (i *Interceptor) Collect(ch chan<- prometheus.Metric) {
	i.requests.Collect(ch)
	i.duration.Collect(ch)
	i.inFlight.Collect(ch)
	i.messages.Collect(ch)
}

// Split returns the service and method of a procedure
// ("/agora.v1.SchedulerService/Subscribe" -> "agora.v1.SchedulerService",
// "Subscribe"); a procedure without a slash is all method.
func Split(procedure string) (service, method string) {
	p := strings.TrimPrefix(procedure, "/")
	if j := strings.LastIndexByte(p, '/'); j >= 0 {
		return p[:j], p[j+1:]
	}
	return "", p
}

// Code is the code label of an error: "ok" for nil, else the Connect
// code's name ("unavailable"); a bare context error is canceled or
// deadline_exceeded, any other error unknown.
func Code(err error) string {
	var ce *connect.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce):
		return ce.Code().String()
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled.String()
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded.String()
	}
	return connect.CodeOf(err).String()
}

func streamType(t connect.StreamType) string {
	switch t {
	case connect.StreamTypeUnary:
		return "unary"
	case connect.StreamTypeClient:
		return "client_stream"
	case connect.StreamTypeServer:
		return "server_stream"
	default:
		return "bidi"
	}
}

// call is one RPC being measured.
type call struct {
	i                     *Interceptor
	service, method, kind string
	start                 time.Time
	once                  sync.Once
}

func (i *Interceptor) begin(spec connect.Spec) *call {
	service, method := Split(spec.Procedure)
	c := &call{i: i, service: service, method: method, kind: streamType(spec.StreamType), start: i.now()}
	i.inFlight.WithLabelValues(service, method, c.kind).Inc()
	return c
}

// end records the call once, with err's code.
func (c *call) end(err error) {
	c.once.Do(func() {
		code := Code(err)
		c.i.inFlight.WithLabelValues(c.service, c.method, c.kind).Dec()
		c.i.requests.WithLabelValues(c.service, c.method, c.kind, code).Inc()
		c.i.duration.WithLabelValues(c.service, c.method, c.kind, code).Observe(c.i.now().Sub(c.start).Seconds())
	})
}

func (c *call) message(direction string) {
	c.i.messages.WithLabelValues(c.service, c.method, direction).Inc()
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		c := i.begin(req.Spec())
		resp, err := next(ctx, req)
		c.end(err)
		return resp, err
	}
}

// WrapStreamingHandler implements connect.Interceptor: the stream is
// measured from the handler's start to its return.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		c := i.begin(conn.Spec())
		err := next(ctx, &handlerConn{StreamingHandlerConn: conn, c: c})
		c.end(err)
		return err
	}
}

type handlerConn struct {
	connect.StreamingHandlerConn
	c *call
}

func (h *handlerConn) Receive(m any) error {
	err := h.StreamingHandlerConn.Receive(m)
	if err == nil {
		h.c.message("received")
	}
	return err
}

func (h *handlerConn) Send(m any) error {
	err := h.StreamingHandlerConn.Send(m)
	if err == nil {
		h.c.message("sent")
	}
	return err
}

// WrapStreamingClient implements connect.Interceptor: the stream is
// measured from its opening to CloseResponse, with the code of the first
// error other than io.EOF that Receive or Send returned.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return &clientConn{StreamingClientConn: next(ctx, spec), c: i.begin(spec)}
	}
}

type clientConn struct {
	connect.StreamingClientConn
	c   *call
	mu  sync.Mutex
	err error
}

func (s *clientConn) note(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *clientConn) Send(m any) error {
	err := s.StreamingClientConn.Send(m)
	if err == nil {
		s.c.message("sent")
	}
	s.note(err)
	return err
}

func (s *clientConn) Receive(m any) error {
	err := s.StreamingClientConn.Receive(m)
	if err == nil {
		s.c.message("received")
	}
	s.note(err)
	return err
}

func (s *clientConn) CloseResponse() error {
	err := s.StreamingClientConn.CloseResponse()
	s.mu.Lock()
	first := s.err
	s.mu.Unlock()
	s.c.end(first)
	return err
}
