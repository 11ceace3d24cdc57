package master

import (
	"context"
	"fmt"
	"slices"
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
			c := newCoalescer(b, fsm.CmdRegisterAgent, fsm.CmdBatch, inFlight, true, func(cs []*agorav1.RegisterAgentCommand) proto.Message {
				out := &agorav1.BatchCommand{}
				for range cs {
					out.Items = append(out.Items, &agorav1.BatchItem{})
				}
				return out
			})
			const n = 5
			errs := make(chan error, n)
			submit := func(i int) {
				go func() {
					_, err := c.submit(context.Background(), &agorav1.RegisterAgentCommand{
						Agent: &agorav1.Agent{Id: fmt.Sprintf("a%d", i), Hostname: "h", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:64"))},
						Now:   timestamppb.Now(),
					})
					errs <- err
				}()
			}
			// The first item's entry commits first; the others arrive
			// while it does. Submitted all at once, the first flusher
			// could take every item before a second one started, which
			// then found nothing to send (a correct coalescer, and a test
			// that waited in vain for a second entry).
			submit(0)
			eventually(t, "the first entry in flight", func() bool {
				cur, _ := b.flight()
				return cur == 1
			})
			for i := 1; i < n; i++ {
				submit(i)
			}
			eventually(t, fmt.Sprintf("%d entries in flight", inFlight), func() bool {
				cur, _ := b.flight()
				return cur == inFlight
			})
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

// asyncBackend proposes without waiting (like Master.proposeAsync): it
// records each entry's first agent id (the test's wrap makes the entry an
// Agent carrying it) in proposal order; waits block on gate.
type asyncBackend struct {
	flightBackend
	proposed []string
}

func (b *asyncBackend) proposeAsync(_ fsm.CommandType, msg proto.Message) (func() (fsm.Result, error), error) {
	b.mu.Lock()
	b.cur++
	b.peak = max(b.peak, b.cur)
	b.proposed = append(b.proposed, msg.(*agorav1.Agent).GetId())
	b.mu.Unlock()
	return func() (fsm.Result, error) {
		<-b.gate
		b.mu.Lock()
		b.cur--
		b.mu.Unlock()
		return fsm.Result{Index: 1}, nil
	}, nil
}

func (b *asyncBackend) proposals() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.proposed...)
}

// TestCoalescerOrderedInFlight: with a backend that proposes without
// waiting, one goroutine proposes entries in queue order with up to
// inFlight waiting for their commit, and a call queued while every slot is
// taken goes out once one frees.
func TestCoalescerOrderedInFlight(t *testing.T) {
	b := &asyncBackend{flightBackend: flightBackend{st: fsm.New(fsm.Config{}).State(), gate: make(chan struct{})}}
	c := newCoalescer(b, fsm.CmdRegisterAgent, fsm.CmdBatch, 2, false, func(cs []*agorav1.RegisterAgentCommand) proto.Message {
		return &agorav1.Agent{Id: cs[0].GetAgent().GetId()} // the entry's first item
	})
	errs := make(chan error, 3)
	submit := func(id string) {
		go func() {
			_, err := c.submit(context.Background(), &agorav1.RegisterAgentCommand{
				Agent: &agorav1.Agent{Id: id, Hostname: "h", Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:64"))},
				Now:   timestamppb.Now(),
			})
			errs <- err
		}()
	}
	submit("a")
	eventually(t, "a proposed", func() bool { return len(b.proposals()) == 1 })
	submit("b")
	eventually(t, "b proposed while a commits", func() bool { return len(b.proposals()) == 2 })
	submit("c")
	// Both slots are taken: once c is queued it stays there (the one
	// proposer waits for a slot) until an entry commits.
	eventually(t, "c queued", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue) == 1
	})
	if p := b.proposals(); len(p) != 2 {
		t.Fatalf("proposals %v with both slots taken, want [a b]", p)
	}
	close(b.gate)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p := b.proposals(); !slices.Equal(p, []string{"a", "b", "c"}) {
		t.Fatalf("proposals %v, want [a b c]", p)
	}
	if _, peak := b.flight(); peak != 2 {
		t.Fatalf("peak entries in flight %d, want 2", peak)
	}
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within 10 s", what)
		case <-tick.C:
		}
	}
}
