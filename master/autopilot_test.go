package master_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// waitUntil polls cond on a ticker until it returns nil or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %v: %v", what, d, err)
		case <-tick.C:
		}
	}
}

// raftServers is the leader's Raft configuration as "id=suffrage", sorted.
func raftServers(c *devcluster.Cluster) ([]string, error) {
	l := c.Leader()
	if l == nil {
		return nil, fmt.Errorf("no leader")
	}
	f := l.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		sf := "voter"
		if s.Suffrage != raft.Voter {
			sf = "nonvoter"
		}
		out = append(out, string(s.ID)+"="+sf)
	}
	sort.Strings(out)
	return out, nil
}

func wantServers(c *devcluster.Cluster, want ...string) error {
	got, err := raftServers(c)
	if err != nil {
		return err
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("raft configuration %v, want %v", got, want)
	}
	return nil
}

// wantHealth checks autopilot's view on the leader.
func wantHealth(ctx context.Context, cl *client.Client, voters, tolerance int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cl.Operator.RaftHealth(ctx, connect.NewRequest(&agorav1.RaftHealthRequest{}))
	if err != nil {
		return err
	}
	h := resp.Msg
	if !h.GetHealthy() || int(h.GetFailureTolerance()) != tolerance || len(h.GetVoters()) != voters {
		return fmt.Errorf("health: healthy=%v tolerance=%d voters=%v servers=%v", h.GetHealthy(), h.GetFailureTolerance(), h.GetVoters(), h.GetServers())
	}
	return nil
}

// writeLoad sets a new role every few milliseconds through one client
// and remembers the writes that were acknowledged.
type writeLoad struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	acked  []string
	failed int
}

func startWrites(addrs []string) *writeLoad {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writeLoad{cancel: cancel, done: make(chan struct{})}
	cl := client.New(strings.Join(addrs, ","), client.WithCallTimeout(10*time.Second))
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			name := fmt.Sprintf("load-%d", i)
			_, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: name, Weight: 1})
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, name)
			} else if ctx.Err() == nil {
				w.failed++
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *writeLoad) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// stop ends the load and returns the acknowledged writes.
func (w *writeLoad) stop() []string {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// checkWrites reads every role back through the leader (linearizable).
func checkWrites(t *testing.T, c *devcluster.Cluster, acked []string) {
	t.Helper()
	cl := client.New(strings.Join(c.Addrs(), ","))
	var names []string
	waitUntil(t, 10*time.Second, "read roles", func() error {
		var err error
		names, err = roleNames(t, cl.Operator, false)
		return err
	})
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	for _, a := range acked {
		if !have[a] {
			t.Fatalf("acknowledged write %s lost (%d acknowledged, %d roles)", a, len(acked), len(names))
		}
	}
}

// TestAutopilotGrowAndShrinkUnderLoad grows a cluster from 3 masters to 5
// and back while writes flow: new masters join as non-voters and are
// promoted once stable; killed masters are removed by autopilot after the
// dead server cleanup time; no acknowledged write is lost.
func TestAutopilotGrowAndShrinkUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger(),
		MasterConfig: func(mc *master.Config) {
			mc.AutopilotStabilization = time.Second
			mc.AutopilotDeadServerCleanup = 2 * time.Second
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	load := startWrites(c.Addrs())
	defer load.stop()
	cl := client.New(strings.Join(c.Addrs(), ","))

	// Grow: each new master is seen as a non-voter before it votes.
	var added []string
	for range 2 {
		i, err := c.AddMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		added = append(added, c.Master(i).ID())
	}
	seenNonvoter := map[string]bool{}
	want := []string{"m1=voter", "m2=voter", "m3=voter", "m4=voter", "m5=voter"}
	waitUntil(t, 30*time.Second, "5 voters", func() error {
		got, _ := raftServers(c)
		for _, s := range got {
			if id, ok := strings.CutSuffix(s, "=nonvoter"); ok {
				seenNonvoter[id] = true
			}
		}
		return wantServers(c, want...)
	})
	for _, id := range added {
		if !seenNonvoter[id] {
			t.Errorf("master %s was never a non-voter before its promotion", id)
		}
	}
	waitUntil(t, 15*time.Second, "autopilot healthy with 5 voters", func() error { return wantHealth(ctx, cl, 5, 2) })
	grown := load.count()

	// Shrink: kill two masters other than the leader; autopilot removes
	// them once they have been dead for the cleanup time.
	var killed []string
	li := c.LeaderIndex()
	for i := len(c.Masters()) - 1; i >= 0 && len(killed) < 2; i-- {
		if i != li {
			killed = append(killed, c.Master(i).ID())
			c.Kill(i)
		}
	}
	var left []string
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		if !slices.Contains(killed, id) {
			left = append(left, id+"=voter")
		}
	}
	waitUntil(t, 30*time.Second, "dead masters removed", func() error { return wantServers(c, left...) })
	waitUntil(t, 15*time.Second, "autopilot healthy with 3 voters", func() error { return wantHealth(ctx, cl, 3, 1) })
	waitUntil(t, 10*time.Second, "removed masters forgotten", func() error {
		for _, rec := range c.Leader().State().Masters() {
			if slices.Contains(killed, rec.GetId()) {
				return fmt.Errorf("master record %s remains", rec.GetId())
			}
		}
		return nil
	})
	waitUntil(t, 10*time.Second, "writes flow after the shrink", func() error {
		if n := load.count(); n <= grown {
			return fmt.Errorf("%d acknowledged writes, %d when grown", n, grown)
		}
		return nil
	})
	acked := load.stop()
	checkWrites(t, c, acked)
	t.Logf("%d writes acknowledged, %d failed attempts", len(acked), load.failed)
}

// TestRaftRemoveRefusals: removing the leader, or a voter that quorum
// needs while another is dead, is refused with FailedPrecondition and
// leaves the configuration as it was; removing the dead voter works.
// Transferring leadership to a named voter moves it there.
func TestRaftRemoveRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger(),
		MasterConfig: func(mc *master.Config) { mc.AutopilotDeadServerCleanup = -1 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cl := client.New(strings.Join(c.Addrs(), ","))

	// Transfer leadership to a named follower.
	target := c.Master(followerIndex(c)).ID()
	resp, err := cl.Operator.TransferLeader(ctx, connect.NewRequest(&agorav1.TransferLeaderRequest{Id: target}))
	if err != nil {
		t.Fatalf("transfer leadership to %s: %v", target, err)
	}
	if resp.Msg.GetLeaderId() != target {
		t.Fatalf("transfer answered leader %q, want %s", resp.Msg.GetLeaderId(), target)
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil || leader.ID() != target {
		t.Fatalf("leader after transfer: %v; want %s", err, target)
	}
	_, err = cl.Operator.TransferLeader(ctx, connect.NewRequest(&agorav1.TransferLeaderRequest{Id: "m9"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("transfer to unknown master: %v, want NotFound", err)
	}

	configIndex := func() uint64 {
		f := c.Leader().Raft().GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		return f.Index()
	}
	refused := func(id, why string) {
		t.Helper()
		before := configIndex()
		_, err := cl.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: id}))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), why) {
			t.Fatalf("remove %s: %v, want FailedPrecondition about %q", id, err, why)
		}
		if after := configIndex(); after != before {
			t.Fatalf("remove %s was refused but the configuration moved from index %d to %d", id, before, after)
		}
		if err := wantServers(c, "m1=voter", "m2=voter", "m3=voter"); err != nil {
			t.Fatal(err)
		}
	}
	refused(leader.ID(), "is the leader")

	// Kill one follower; the other one is then needed for quorum.
	dead := followerIndex(c)
	deadID := c.Master(dead).ID()
	c.Kill(dead)
	waitUntil(t, 15*time.Second, "gossip sees the dead master fail", func() error {
		for _, mem := range c.Leader().Gossip().Members() {
			if mem.Tags.ID == deadID && mem.Status == gossip.StatusAlive {
				return fmt.Errorf("%s still alive", deadID)
			}
		}
		return nil
	})
	needed := followerIndex(c)
	refused(c.Master(needed).ID(), "below the quorum")

	// Autopilot's view names the dead master unhealthy, and a dead master
	// is not removed on its own with cleanup off.
	waitUntil(t, 10*time.Second, "health shows the dead master", func() error {
		resp, err := cl.Operator.RaftHealth(ctx, connect.NewRequest(&agorav1.RaftHealthRequest{}))
		if err != nil {
			return err
		}
		if resp.Msg.GetHealthy() || resp.Msg.GetFailureTolerance() != 0 {
			return fmt.Errorf("healthy=%v tolerance=%d", resp.Msg.GetHealthy(), resp.Msg.GetFailureTolerance())
		}
		for _, s := range resp.Msg.GetServers() {
			if s.GetId() == deadID && !s.GetHealthy() && s.GetNodeStatus() != "alive" {
				return nil
			}
		}
		return fmt.Errorf("servers %v", resp.Msg.GetServers())
	})
	if _, err := cl.Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: deadID})); err != nil {
		t.Fatalf("remove dead %s: %v", deadID, err)
	}
	var want []string
	for _, id := range []string{"m1", "m2", "m3"} {
		if id != deadID {
			want = append(want, id+"=voter")
		}
	}
	if err := wantServers(c, want...); err != nil {
		t.Fatal(err)
	}
}

// TestRollingRestartUnderLoad restarts every master in turn, gracefully,
// while writes flow and a framework with a running task receives offers:
// after each restart the master is back as a healthy voter and offers
// still arrive; at the end no acknowledged write is lost and the task
// still runs under the same framework id.
func TestRollingRestartUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger(),
		MasterConfig: func(mc *master.Config) {
			mc.HeartbeatInterval = time.Second
			mc.OfferTimeout = time.Minute
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: "a1", Resources: "cpus:2;mem:1024"}); err != nil {
		t.Fatal(err)
	}
	s := &offerCounter{}
	fwCtx, fwCancel := context.WithCancel(context.Background())
	fwDone := make(chan error, 1)
	go func() {
		fwDone <- runOfferCounter(fwCtx, c.Addrs(), s)
	}()
	defer func() {
		fwCancel()
		<-fwDone
	}()
	waitUntil(t, 20*time.Second, "task running", func() error {
		fid := s.frameworkID()
		l := c.Leader()
		if fid == "" || l == nil {
			return fmt.Errorf("framework %q, leader known: %v", fid, l != nil)
		}
		tk, ok := l.State().Task(fid, "keep")
		if !ok || tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("task keep: %v", tk.GetState())
		}
		return nil
	})
	fid := s.frameworkID()
	load := startWrites(c.Addrs())
	defer load.stop()
	cl := client.New(strings.Join(c.Addrs(), ","))

	for i := range c.Masters() {
		if err := c.StopMaster(i); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		if err := c.Restart(ctx, i); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		if _, err := c.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 20*time.Second, fmt.Sprintf("m%d back as a healthy voter", i+1), func() error {
			if err := wantServers(c, "m1=voter", "m2=voter", "m3=voter"); err != nil {
				return err
			}
			return wantHealth(ctx, cl, 3, 1)
		})
		offers, writes := s.count(), load.count()
		waitUntil(t, 20*time.Second, fmt.Sprintf("offers and writes flow after restarting m%d", i+1), func() error {
			if s.count() <= offers+1 || load.count() <= writes {
				return fmt.Errorf("offers %d (were %d), writes %d (were %d)", s.count(), offers, load.count(), writes)
			}
			return nil
		})
	}
	acked := load.stop()
	checkWrites(t, c, acked)
	if got := s.frameworkID(); got != fid {
		t.Fatalf("framework id changed from %s to %s", fid, got)
	}
	tk, ok := c.Leader().State().Task(fid, "keep")
	if !ok || tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("task keep after the rolling restart: %v", tk.GetState())
	}
	t.Logf("%d writes acknowledged, %d offers received", len(acked), s.count())
}
