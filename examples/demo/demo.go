package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Tasks is how many tasks the demo keeps running.
const Tasks = 3

// Task resources are small so the demo fits beside real work.
const (
	taskCPUs = 0.1
	taskMem  = 16
)

// Run runs the demo framework until ctx ends, then tears it down. Progress
// goes to out, one line per event.
func Run(ctx context.Context, masters []string, out io.Writer) error {
	return run(ctx, masters, out, nil)
}

func run(ctx context.Context, masters []string, out io.Writer, logger *slog.Logger) error {
	if out == nil {
		out = io.Discard
	}
	s := &scheduler{out: out, active: map[string]bool{}}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- framework.Run(runCtx, framework.Config{
			Masters: masters,
			Info:    &agorav1.FrameworkInfo{Name: "demo", Roles: []string{"*"}, FailoverTimeoutSeconds: 60},
			Logger:  logger,
		}, s)
	}()
	select {
	case err := <-done:
		return fmt.Errorf("demo framework: %w", err)
	case <-ctx.Done():
	}
	var err error
	if d := s.driver(); d != nil {
		tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = d.Teardown(tctx)
		cancel()
		if err == nil {
			s.printf("demo: framework %s torn down\n", d.FrameworkID())
		}
	}
	stop()
	if rerr := <-done; rerr != nil && !errors.Is(rerr, framework.ErrTornDown) && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("demo framework: %w", err)
	}
	return nil
}

// scheduler keeps Tasks short tasks running.
type scheduler struct {
	out    io.Writer
	mu     sync.Mutex
	d      framework.Driver
	next   int
	active map[string]bool // launched, not terminal
}

func (s *scheduler) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, format, args...)
}

func (s *scheduler) driver() framework.Driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d
}

// Subscribed implements framework.Scheduler.
func (s *scheduler) Subscribed(d framework.Driver, id string, resubscribed bool) {
	s.mu.Lock()
	s.d = d
	s.mu.Unlock()
	s.printf("demo: subscribed as %s (resubscribed=%v)\n", id, resubscribed)
}

// Offers implements framework.Scheduler.
func (s *scheduler) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	for _, o := range offers {
		cpus := framework.ScalarIn(o.GetResources(), "cpus", "")
		mem := framework.ScalarIn(o.GetResources(), "mem", "")
		s.printf("demo: offer %s from agent %s: cpus %.2f mem %.0f\n", o.GetId(), o.GetAgentId(), cpus, mem)
		var tasks []*agorav1.TaskInfo
		s.mu.Lock()
		for len(s.active)+len(tasks) < Tasks && cpus >= taskCPUs && mem >= taskMem {
			s.next++
			id := fmt.Sprintf("demo-%d", s.next)
			cmd := fmt.Sprintf("sleep %d", 3+rand.IntN(5))
			tasks = append(tasks, framework.Task(id, o.GetAgentId(), cmd,
				framework.Scalar("cpus", taskCPUs), framework.Scalar("mem", taskMem)))
			cpus -= taskCPUs
			mem -= taskMem
		}
		for _, t := range tasks {
			s.active[t.GetTaskId()] = true
		}
		s.mu.Unlock()
		if len(tasks) == 0 {
			refuse := 2.0
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(tasks...)}, nil)
		for _, t := range tasks {
			if err != nil {
				s.mu.Lock()
				delete(s.active, t.GetTaskId())
				s.mu.Unlock()
				continue
			}
			s.printf("demo: launching %s (%s) on agent %s\n", t.GetTaskId(), t.GetCommand().GetValue(), o.GetAgentId())
		}
		if err != nil {
			s.printf("demo: launch failed: %v\n", err)
		}
	}
}

// Rescind implements framework.Scheduler.
func (s *scheduler) Rescind(_ framework.Driver, offerID string) {
	s.printf("demo: offer %s rescinded\n", offerID)
}

// Update implements framework.Scheduler.
func (s *scheduler) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	s.printf("demo: task %s %s on agent %s\n", st.GetTaskId(), framework.StateName(st.GetState()), st.GetAgentId())
	if framework.IsTerminal(st.GetState()) {
		s.mu.Lock()
		delete(s.active, st.GetTaskId())
		s.mu.Unlock()
	}
}

// Failure implements framework.Scheduler.
func (s *scheduler) Failure(_ framework.Driver, agentID string) {
	s.printf("demo: agent %s lost\n", agentID)
}

// Error implements framework.Scheduler.
func (s *scheduler) Error(_ framework.Driver, message string) {
	s.printf("demo: error: %s\n", message)
}
