package master

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// flightBackend counts the batch entries being committed at once; each
// waits for gate.
type flightBackend struct {
	backend
	st        *fsm.State
	gate      chan struct{}
	mu        sync.Mutex
	cur, peak int
	items     int
}

func (b *flightBackend) ReadyState(context.Context) (*fsm.State, error) { return b.st, nil }

func (b *flightBackend) Apply(_ context.Context, _ fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	b.mu.Lock()
	b.cur++
	b.peak = max(b.peak, b.cur)
	b.items += len(msg.(*agorav1.BatchCommand).GetItems())
	b.mu.Unlock()
	<-b.gate
	b.mu.Lock()
	b.cur--
	b.mu.Unlock()
	return fsm.Result{Index: 1}, nil
}

func (b *flightBackend) flight() (cur, peak int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.peak
}

// TestCoalescerInFlight: a coalescer commits at most inFlight batch
// entries at once, starts a second one while the first is committing when
// inFlight allows, and answers every item.
func TestCoalescerInFlight(t *testing.T) {
	for _, inFlight := range []int{1, 2} {
		t.Run(fmt.Sprint(inFlight), func(t *testing.T) {
			b := &flightBackend{st: fsm.New(fsm.Config{}).State(), gate: make(chan struct{})}
			c := newCoalescer(b, fsm.CmdRegisterAgent, fsm.CmdBatch, inFlight, func(cs []*agorav1.RegisterAgentCommand) proto.Message {
				out := &agorav1.BatchCommand{}
				for range cs {
					out.Items = append(out.Items, &agorav1.BatchItem{})
				}
				return out
			})
			const n = 5
			errs := make(chan error, n)
			for i := range n {
				go func() {
					_, err := c.submit(context.Background(), &agorav1.RegisterAgentCommand{
						Agent: &agorav1.Agent{Id: fmt.Sprintf("a%d", i), Hostname: "h", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:64"))},
						Now:   timestamppb.Now(),
					})
					errs <- err
				}()
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if cur, _ := b.flight(); cur == inFlight {
					break
				}
				if time.Now().After(deadline) {
					cur, peak := b.flight()
					t.Fatalf("entries in flight %d (peak %d), want %d", cur, peak, inFlight)
				}
				time.Sleep(time.Millisecond)
			}
			close(b.gate)
			for range n {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if _, peak := b.flight(); peak != inFlight {
				t.Fatalf("peak entries in flight %d, want %d", peak, inFlight)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.items != n {
				t.Fatalf("%d items committed, want %d", b.items, n)
			}
		})
	}
}
