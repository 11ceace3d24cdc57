package master_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

func explainReason(r *agorav1.ExplainFrameworkResponse, name string) *agorav1.SkipReason {
	for _, sr := range r.GetReasons() {
		if sr.GetReason() == name {
			return sr
		}
	}
	return nil
}

func TestExplainFramework(t *testing.T) {
	sc := startSchedCluster(t, nil)
	sc.registerAgent("ag-live", "cpus:1;mem:512")
	sc.registerAgent("ag-lost", "cpus:1;mem:512")
	sc.apply(fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: "ag-lost", Now: timestamppb.Now()})
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("explained", "web"))
	o := f.offerOn(t, "ag-live")
	ctx := context.Background()
	op := func() agorav1connect.OperatorServiceClient {
		return agorav1connect.NewOperatorServiceClient(http.DefaultClient, sc.leader().HTTPURL())
	}
	explain := func(id string) (*agorav1.ExplainFrameworkResponse, error) {
		resp, err := op().ExplainFramework(ctx, connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: id}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	// until polls the leader's explanation of f until check accepts it.
	until := func(what string, check func(*agorav1.ExplainFrameworkResponse) error) *agorav1.ExplainFrameworkResponse {
		t.Helper()
		var last error
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			r, err := explain(f.fid)
			if err == nil {
				if last = check(r); last == nil {
					return r
				}
			} else {
				last = err
			}
			<-time.After(50 * time.Millisecond) // poll interval
		}
		t.Fatalf("%s: %v", what, last)
		return nil
	}

	// The unreachable agent is named; the live one was offered, or (in a
	// later round) is held by that outstanding offer.
	r := until("explanation naming both agents", func(r *agorav1.ExplainFrameworkResponse) error {
		un := explainReason(r, "agent_unreachable")
		if un == nil || un.GetCount() != 1 || un.GetExampleAgent() != "ag-lost" {
			return fmt.Errorf("no agent_unreachable=1 (ag-lost): %v", r)
		}
		if nf := explainReason(r, "nothing_free"); r.GetOffered() != 1 && (nf == nil || nf.GetExampleAgent() != "ag-live") {
			return fmt.Errorf("ag-live neither offered nor nothing_free: %v", r)
		}
		return nil
	})
	if r.GetFrameworkId() != f.fid || len(r.GetRoles()) != 1 || r.GetRoles()[0] != "web" || r.GetRoundIndex() == 0 || r.GetRoundTime() == nil {
		t.Fatalf("explanation header: %v", r)
	}

	// Declined with a long filter: the next round counts ag-live as declined.
	if _, err := sc.client().Decline(ctx, connect.NewRequest(&agorav1.DeclineRequest{
		Call: f.call(), OfferIds: []string{o.GetId()}, RefuseSeconds: schedPtr(3600)})); err != nil {
		t.Fatalf("decline: %v", err)
	}
	until("declined_filter for ag-live", func(r *agorav1.ExplainFrameworkResponse) error {
		df := explainReason(r, "declined_filter")
		if r.GetOffered() != 0 || df == nil || df.GetCount() != 1 || df.GetExampleAgent() != "ag-live" {
			return fmt.Errorf("want offered=0 declined_filter=1 (ag-live): %v", r)
		}
		var sum uint64
		for _, sr := range r.GetReasons() {
			sum += sr.GetCount()
		}
		if sum != 2 {
			return fmt.Errorf("counts add up to %d, want 2 agents x 1 role: %v", sum, r)
		}
		return nil
	})

	// Bad input and other masters.
	_, err := explain("")
	schedWantCode(t, "explain without an id", err, connect.CodeInvalidArgument)
	_, err = explain("no-such-framework")
	schedWantCode(t, "explain an unknown framework", err, connect.CodeNotFound)
	for _, m := range sc.c.Masters() {
		if m == sc.leader() {
			continue
		}
		_, err := agorav1connect.NewOperatorServiceClient(http.DefaultClient, m.HTTPURL()).ExplainFramework(ctx,
			connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: f.fid}))
		schedWantCode(t, "explain at a follower", err, connect.CodeUnavailable)
		if id, _ := schedLeaderRedirect(err); id != sc.leader().ID() {
			t.Fatalf("follower redirect names %q, want %s", id, sc.leader().ID())
		}
	}

	// Disconnected (its stream closed): in no round, FailedPrecondition.
	g := schedSubscribe(t, sc.leader().HTTPURL(), &agorav1.FrameworkInfo{Name: "leaving", Roles: []string{"web"}, FailoverTimeoutSeconds: 3600})
	g.cancel()
	sc.waitFor("framework disconnected", func(st *fsm.State) error {
		if fw, _ := st.Framework(g.fid); fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED {
			return fmt.Errorf("state %v", fw.GetState())
		}
		return nil
	})
	_, err = explain(g.fid)
	schedWantCode(t, "explain a disconnected framework", err, connect.CodeFailedPrecondition)

	// Torn down: FailedPrecondition, though the last round still knew it.
	schedTeardown(t, sc, f)
	_, err = explain(f.fid)
	schedWantCode(t, "explain a torn-down framework", err, connect.CodeFailedPrecondition)
}
