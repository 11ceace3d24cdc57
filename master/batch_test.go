package master_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

func roleCmd(name string, weight float64) *agorav1.SetRoleCommand {
	return &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: name, Weight: weight}}
}

// waitQuiet waits until the leader's log has not moved for ten polls in
// a row (the leader's own startup writes are done) and returns its last
// index.
func waitQuiet(t *testing.T, m *master.Master) uint64 {
	t.Helper()
	var last uint64
	still := 0
	eventually(t, 20*time.Second, "log quiet", func() error {
		li := m.Raft().LastIndex()
		if li != last || m.Raft().AppliedIndex() != li {
			last, still = li, 0
			return fmt.Errorf("last index %d, applied %d", li, m.Raft().AppliedIndex())
		}
		if still++; still < 10 {
			return fmt.Errorf("last index %d for %d polls", li, still)
		}
		return nil
	})
	return last
}

// onStableLeader runs try against the leader until one run sees no
// change of leadership (a loaded machine may lose an election mid-run;
// the run's answers are then judged by the failover test, not here).
// try returns the failures it found; they fail the test only from a
// stable run.
func onStableLeader(t *testing.T, c *devcluster.Cluster, try func(attempt int, l *master.Master) []string) {
	t.Helper()
	for attempt := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l, err := c.WaitLeader(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		term := l.Raft().CurrentTerm()
		fails := try(attempt, l)
		if l.IsLeader() && l.Raft().CurrentTerm() == term {
			for _, f := range fails {
				t.Error(f)
			}
			return
		}
		t.Logf("attempt %d: leadership changed during the run; again", attempt)
	}
	t.Fatal("leadership changed during every attempt")
}

// TestBatchEntryEachCallerOwnResult: writes of different kinds queued
// together go out as one Batch entry; each caller gets its own item's
// outcome and error code, a refused item (including one that the leader's
// judgement passed but an earlier item of the same entry made invalid)
// changes nothing and the others apply.
func TestBatchEntryEachCallerOwnResult(t *testing.T) {
	c := startCluster(t, nil)
	onStableLeader(t, c, func(attempt int, l *master.Master) (fails []string) {
		ctx := context.Background()
		n := func(s string) string { return fmt.Sprintf("%s-%d", s, attempt) }
		if _, err := l.Apply(ctx, fsm.CmdSetRole, roleCmd(n("x"), 1)); err != nil {
			return []string{err.Error()}
		}
		ts := []fsm.CommandType{fsm.CmdSetRole, fsm.CmdDeleteRole, fsm.CmdDeleteRole, fsm.CmdSetRole, fsm.CmdKillTask, fsm.CmdSetRole}
		msgs := []proto.Message{
			roleCmd(n("r1"), 1),
			&agorav1.DeleteRoleCommand{Name: n("x")},
			&agorav1.DeleteRoleCommand{Name: n("x")}, // the item before deleted it
			roleCmd(n("r2"), 2),
			&agorav1.KillTaskCommand{FrameworkId: "nope", TaskId: "t"},
			roleCmd(n("bad"), -1),
		}
		res, errs := l.BatchForTest(ctx, ts, msgs)
		want := []connect.Code{0, 0, connect.CodeNotFound, 0, connect.CodeNotFound, connect.CodeInvalidArgument}
		for i := range ts {
			if got := connect.CodeOf(errs[i]); (errs[i] == nil) != (want[i] == 0) || (errs[i] != nil && got != want[i]) {
				fails = append(fails, fmt.Sprintf("item %d (%s): err %v, want code %v", i, ts[i], errs[i], want[i]))
			}
			if (res[i].Err != nil) != (want[i] != 0) {
				fails = append(fails, fmt.Sprintf("item %d: result rejection %v, want one: %v", i, res[i].Err, want[i] != 0))
			}
			if res[i].Index == 0 || res[i].Index != res[0].Index {
				fails = append(fails, fmt.Sprintf("item %d at index %d, item 0 at %d: want one entry", i, res[i].Index, res[0].Index))
			}
		}
		if len(fails) > 0 {
			return fails
		}
		for _, m := range c.Masters() {
			eventually(t, 10*time.Second, "replicas apply the batch", func() error {
				st := m.State()
				if st.Index() < res[0].Index {
					return fmt.Errorf("%s at %d", m.ID(), st.Index())
				}
				for name, want := range map[string]bool{n("r1"): true, n("r2"): true, n("x"): false, n("bad"): false} {
					if _, ok := st.Role(name); ok != want {
						return fmt.Errorf("%s: role %s present=%v, want %v", m.ID(), name, ok, want)
					}
				}
				return nil
			})
		}

		// Items whose caller has gone before the entry is proposed are
		// answered with their ctx's error and never reach the log.
		before := waitQuiet(t, l)
		gone, cancel := context.WithCancel(ctx)
		cancel()
		_, errs = l.BatchForTest(gone, []fsm.CommandType{fsm.CmdSetRole, fsm.CmdSetRole}, []proto.Message{roleCmd(n("late1"), 1), roleCmd(n("late2"), 1)})
		for i, err := range errs {
			if connect.CodeOf(err) != connect.CodeCanceled {
				fails = append(fails, fmt.Sprintf("cancelled item %d: %v, want Canceled", i, err))
			}
		}
		if li := l.Raft().LastIndex(); li != before {
			fails = append(fails, fmt.Sprintf("cancelled items moved the log from %d to %d", before, li))
		}
		return fails
	})
}

// TestBatchConcurrentWriters: concurrent Connect writers each get their
// own answer: every valid role is written, exactly one of the deletes of
// one role succeeds and the others are NotFound, and writes refused at
// the edge (InvalidArgument, NotFound) leave the log untouched.
func TestBatchConcurrentWriters(t *testing.T) {
	c := startCluster(t, nil)
	onStableLeader(t, c, func(attempt int, l *master.Master) (fails []string) {
		op := agorav1connect.NewOperatorServiceClient(http.DefaultClient, l.HTTPURL())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n := func(s string, i int) string { return fmt.Sprintf("%s%d-%d", s, i, attempt) }
		if _, err := setRole(ctx, op, &agorav1.Role{Name: n("shared", 0), Weight: 1}); err != nil {
			return []string{err.Error()}
		}
		const writers, deleters = 32, 16
		var wg sync.WaitGroup
		setErrs := make([]error, writers)
		delErrs := make([]error, deleters)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, setErrs[w] = setRole(ctx, op, &agorav1.Role{Name: n("c", w), Weight: float64(w + 1)})
			}()
		}
		for d := range deleters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, delErrs[d] = op.DeleteRole(ctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: n("shared", 0)}))
			}()
		}
		wg.Wait()
		for w, err := range setErrs {
			if err != nil {
				fails = append(fails, fmt.Sprintf("writer %d: %v", w, err))
			}
		}
		ok := 0
		for d, err := range delErrs {
			switch {
			case err == nil:
				ok++
			case connect.CodeOf(err) != connect.CodeNotFound:
				fails = append(fails, fmt.Sprintf("deleter %d: %v, want success or NotFound", d, err))
			}
		}
		if ok != 1 {
			fails = append(fails, fmt.Sprintf("%d deletes of one role succeeded, want exactly 1", ok))
		}
		st := l.State()
		for w := range writers {
			if r, found := st.Role(n("c", w)); !found || r.GetWeight() != float64(w+1) {
				fails = append(fails, fmt.Sprintf("role %s = %v, %v", n("c", w), r, found))
			}
		}
		if _, found := st.Role(n("shared", 0)); found {
			fails = append(fails, "role shared survived its delete")
		}

		// Refused writes, concurrent: each gets its own code, none is logged.
		before := waitQuiet(t, l)
		codes := make([]connect.Code, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if w%2 == 0 {
					_, err = l.Apply(ctx, fsm.CmdSetRole, roleCmd(n("neg", w), -1))
				} else {
					_, err = l.Apply(ctx, fsm.CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: n("none", w)})
				}
				codes[w] = connect.CodeOf(err)
			}()
		}
		wg.Wait()
		for w, code := range codes {
			want := connect.CodeInvalidArgument
			if w%2 == 1 {
				want = connect.CodeNotFound
			}
			if code != want {
				fails = append(fails, fmt.Sprintf("refused write %d: code %v, want %v", w, code, want))
			}
		}
		if li := l.Raft().LastIndex(); li != before {
			fails = append(fails, fmt.Sprintf("refused writes moved the log from %d to %d", before, li))
		}
		return fails
	})
}

// TestBatchLeaderFailover: writers keep writing through Master.Apply
// while the leader is killed. Every write reported applied is in the new
// leader's state; every write reported failed without "outcome unknown"
// is not; a write is never reported applied without being committed.
func TestBatchLeaderFailover(t *testing.T) {
	c := startCluster(t, nil)
	li := c.LeaderIndex()
	l := c.Leader()
	start := l.Raft().LastIndex()
	const writers = 24
	type outcome struct {
		name string
		err  error
	}
	var mu sync.Mutex
	var outs []outcome
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("f%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := l.Apply(ctx, fsm.CmdSetRole, roleCmd(name, 1))
				cancel()
				mu.Lock()
				outs = append(outs, outcome{name, err})
				mu.Unlock()
				if err != nil {
					return // this master no longer leads
				}
			}
		}()
	}
	eventually(t, 20*time.Second, "writes flowing", func() error {
		if n := l.Raft().LastIndex(); n < start+20 {
			return fmt.Errorf("index %d", n)
		}
		return nil
	})
	c.Kill(li)
	close(stop)
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nl, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var st *fsm.State
	eventually(t, 20*time.Second, "new leader readable", func() error {
		st, err = nl.ReadState(ctx, false)
		return err
	})
	applied, failed, unknown := 0, 0, 0
	for _, o := range outs {
		_, present := st.Role(o.name)
		var ce *connect.Error
		switch {
		case o.err == nil:
			applied++
			if !present {
				t.Errorf("write %s was reported applied but is not in the new leader's state", o.name)
			}
		case errors.As(o.err, &ce) && ce.Meta().Get("Agora-Outcome") == "unknown":
			unknown++
		default:
			failed++
			if present {
				t.Errorf("write %s was reported failed (%v) but was applied", o.name, o.err)
			}
		}
	}
	if applied == 0 {
		t.Fatal("no write was applied before the kill")
	}
	t.Logf("%d writes applied, %d failed, %d outcome unknown", applied, failed, unknown)
}
