package master_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// TestDemandExplained: on a 3-master cluster, a demand larger than any
// agent is accepted, explained as unsatisfiable, and leads to nothing (no
// rescind, no preemption, no retry loop: the log stays still); a demand
// that fits in free resources is explained as placed.
func TestDemandExplained(t *testing.T) {
	sc := startSchedCluster(t, nil)
	sc.apply(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "prod", Priority: 10}})
	sc.registerAgent("ag-d", "cpus:2;mem:1024")
	f := schedSubscribe(t, sc.leader().HTTPURL(), schedInfo("demanding", "prod"))
	f.offerOn(t, "ag-d")
	ctx := context.Background()
	shape := func(spec string) []*agorav1.Resource { return resourcepb.ToProto("", resources.MustParse(spec)) }
	if _, err := sc.client().Demand(ctx, connect.NewRequest(&agorav1.DemandRequest{Call: f.call(), Demands: []*agorav1.Demand{
		{Role: "prod", Resources: shape("cpus:64"), Count: 2},
		{Role: "prod", Resources: shape("cpus:1;mem:256"), Count: 1},
	}})); err != nil {
		t.Fatalf("demand: %v", err)
	}
	op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, sc.leader().HTTPURL())
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := op.ExplainFramework(ctx, connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: f.fid}))
		if err == nil {
			last = checkVerdicts(r.Msg.GetDemands())
		} else {
			last = err
		}
		if last == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("explain: %v", last)
		}
		<-time.After(50 * time.Millisecond) // poll interval
	}
	// Nothing follows from an unsatisfiable demand: the index settles and
	// no preemption is recorded.
	sc.quiesce()
	if ps := sc.leader().State().Preemptions(); len(ps) > 0 {
		t.Fatalf("preemptions for an unsatisfiable demand: %v", ps)
	}
}

func checkVerdicts(vs []*agorav1.DemandVerdict) error {
	if len(vs) != 2 {
		return fmt.Errorf("verdicts %v, want 2", vs)
	}
	big, small := vs[0], vs[1]
	if big.GetUnmet() != 2 || big.GetReason() != "unsatisfiable" {
		return fmt.Errorf("large demand: %v, want unmet=2 unsatisfiable", big)
	}
	if small.GetPlaced() != 1 || small.GetUnmet() != 0 {
		return fmt.Errorf("small demand: %v, want placed=1", small)
	}
	return nil
}
