package framework_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/framework/frameworktest"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// oneTask launches a single task on the first offer large enough and stops
// when it has run.
type oneTask struct {
	mu       sync.Mutex
	launched bool
	finished chan struct{}
}

func (s *oneTask) Subscribed(d framework.Driver, id string, resubscribed bool) {
	fmt.Println("subscribed as", id)
}

func (s *oneTask) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	for _, o := range offers {
		s.mu.Lock()
		fits := !s.launched && framework.ScalarIn(o.GetResources(), "cpus", "") >= 0.5 &&
			framework.ScalarIn(o.GetResources(), "mem", "") >= 64
		if fits {
			s.launched = true
		}
		s.mu.Unlock()
		if !fits {
			refuse := 5.0
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		task := framework.Task("hello-1", o.GetAgentId(), "echo hello",
			framework.Scalar("cpus", 0.5), framework.Scalar("mem", 64))
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(task)}, nil); err != nil {
			fmt.Println("accept:", err)
			continue
		}
		fmt.Println("launched hello-1 on", o.GetAgentId())
		_ = d.Suppress(ctx) // nothing else to run
	}
}

func (s *oneTask) Rescind(d framework.Driver, offerID string) {}

func (s *oneTask) Update(d framework.Driver, st *agorav1.TaskStatus) {
	fmt.Println("task", st.GetTaskId(), framework.StateName(st.GetState()))
	if framework.IsTerminal(st.GetState()) {
		close(s.finished)
	}
}

func (s *oneTask) Failure(d framework.Driver, agentID string) {}

func (s *oneTask) Error(d framework.Driver, message string) { fmt.Println("error:", message) }

func Example() {
	// A fake master stands in for a cluster here; against a real one,
	// Masters lists the masters' addresses.
	m := frameworktest.NewMaster()
	defer m.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sched := &oneTask{finished: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- framework.Run(ctx, framework.Config{
			Masters: []string{m.URL()},
			Info: &agorav1.FrameworkInfo{
				Name:                   "hello",
				Roles:                  []string{"*"},
				FailoverTimeoutSeconds: 3600,
			},
		}, sched)
	}()

	// What the master would do: offer resources, then report the task.
	_ = m.WaitSubscriptions(ctx, 1)
	_ = m.Send(frameworktest.OffersEvent(&agorav1.Offer{Id: "o1", AgentId: "a1", Resources: []*agorav1.Resource{
		framework.Scalar("cpus", 2), framework.Scalar("mem", 1024),
	}}))
	_, _ = m.WaitCalls(ctx, "Suppress", 1)
	for _, st := range []agorav1.TaskState{agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_FINISHED} {
		_ = m.Send(frameworktest.UpdateEvent(&agorav1.TaskStatus{TaskId: "hello-1", AgentId: "a1", State: st, Uuid: st.String()}))
	}
	<-sched.finished
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// subscribed as fw-1
	// launched hello-1 on a1
	// task hello-1 RUNNING
	// task hello-1 FINISHED
	// run: <nil>
}
