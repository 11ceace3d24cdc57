package clusterbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// StateOptions configures State.
type StateOptions struct {
	// Agents and Tasks size the state (fsm.WriteSyntheticSnapshot);
	// Agents 0 means one per 100 tasks.
	Agents, Tasks int
	// Dir holds the snapshot file and the catch-up cluster; "" = temp.
	Dir string
	// SkipCatchup leaves catchup_s at 0 (no cluster is started).
	SkipCatchup bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// StateResult is `agora bench state --json`.
type StateResult struct {
	Agents int `json:"agents"`
	Tasks  int `json:"tasks"`
	// RSSMiB is this process's resident set with the state loaded in one
	// FSM (the master's store; the process holds little else), HeapMiB
	// the live Go heap after a GC.
	RSSMiB  float64 `json:"rss_mib"`
	HeapMiB float64 `json:"heap_mib"`
	// SnapshotMiB and SnapshotS: State.Persist to a file, fsynced.
	SnapshotMiB float64 `json:"snapshot_mib"`
	SnapshotS   float64 `json:"snapshot_s"`
	// RestoreS: FSM.Restore from that file.
	RestoreS float64 `json:"restore_s"`
	// SnapshotCPUS and RestoreCPUS are the process's CPU time (user +
	// system, every thread, GC included) during the snapshot and the
	// restore: on a loaded machine they show the work done where the wall
	// times mostly show the wait for a core.
	SnapshotCPUS float64 `json:"snapshot_cpu_s"`
	RestoreCPUS  float64 `json:"restore_cpu_s"`
	// CatchupS: a follower of a 3-master cluster holding the state,
	// restarted with an empty data dir while writes continue, until its
	// applied index reaches the leader's commit index at its restart.
	CatchupS float64 `json:"catchup_s"`
	// CatchupWrites is how many writes committed during the catch-up.
	CatchupWrites int64 `json:"catchup_writes"`
	// CatchupError says why the catch-up could not be measured (the other
	// figures stand); State then also returns it as its error.
	CatchupError string `json:"catchup_error,omitempty"`
	// CatchupWritesRefused counts writes refused because leadership moved
	// during the catch-up (the writer then goes on at the new leader); a
	// write refused for any other reason ends the measurement.
	CatchupWritesRefused int64 `json:"catchup_writes_refused"`
}

// State measures the store at scale: it writes a synthetic snapshot,
// loads it, measures RSS and heap, persists it (snapshot) and restores it
// into a fresh FSM (restore), checking that every task came back; then it
// installs the snapshot as the latest of each master of a 3-master cluster
// (installState: each restores it at start), wipes a follower and times
// its catch-up from the leader's InstallSnapshot while a writer keeps
// committing. A failed catch-up leaves the other figures in the result
// beside the error. (raft.Restore into a running leader, the first way,
// holds the leader's loop for the whole FSM restore: at 1M tasks the
// followers elected another leader and the restore failed.)
func State(ctx context.Context, o StateOptions) (StateResult, error) {
	res := StateResult{Agents: o.Agents, Tasks: o.Tasks}
	if res.Agents <= 0 {
		res.Agents = max(1, (o.Tasks+99)/100)
	}
	p := newProgress(o.Progress, "state")
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "agora-bench-state-")
		if err != nil {
			return res, fmt.Errorf("clusterbench: state: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	synth := filepath.Join(dir, "synthetic.snap")
	p.printf("writing a synthetic state of %d agents and %d tasks", res.Agents, o.Tasks)
	if err := writeFile(synth, func(w io.Writer) error { return fsm.WriteSyntheticSnapshot(w, res.Agents, o.Tasks) }); err != nil {
		return res, err
	}
	f := fsm.New(fsm.Config{})
	if err := restoreFile(f, synth); err != nil {
		return res, err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	res.RSSMiB = rssMiB()
	p.printf("loaded: heap %.0f MiB, RSS %.0f MiB", res.HeapMiB, res.RSSMiB)

	snap := filepath.Join(dir, "state.snap")
	t0, c0 := time.Now(), devcluster.ProcessCPU().Seconds()
	if err := writeFile(snap, f.State().Persist); err != nil {
		return res, err
	}
	res.SnapshotS, res.SnapshotCPUS = time.Since(t0).Seconds(), devcluster.ProcessCPU().Seconds()-c0
	st, err := os.Stat(snap)
	if err != nil {
		return res, fmt.Errorf("clusterbench: state: %w", err)
	}
	res.SnapshotMiB = float64(st.Size()) / (1 << 20)
	p.printf("snapshot: %.1f MiB in %.2f s (CPU %.2f s)", res.SnapshotMiB, res.SnapshotS, res.SnapshotCPUS)
	f = nil
	runtime.GC()

	g := fsm.New(fsm.Config{})
	t0, c0 = time.Now(), devcluster.ProcessCPU().Seconds()
	if err := restoreFile(g, snap); err != nil {
		return res, err
	}
	res.RestoreS, res.RestoreCPUS = time.Since(t0).Seconds(), devcluster.ProcessCPU().Seconds()-c0
	if err := checkState(g.State(), res.Agents, o.Tasks); err != nil {
		return res, err
	}
	p.printf("restore: %.2f s (CPU %.2f s), %d agents and %d tasks back", res.RestoreS, res.RestoreCPUS, res.Agents, o.Tasks)
	g = nil
	runtime.GC()
	_ = g
	if o.SkipCatchup {
		return res, nil
	}
	res.CatchupS, res.CatchupWrites, res.CatchupWritesRefused, err = catchup(ctx, dir, snap, o.Tasks, p)
	if err != nil {
		res.CatchupError = err.Error()
	}
	return res, err
}

// checkState verifies that s holds agents agents and tasks tasks.
func checkState(s *fsm.State, agents, tasks int) error {
	if n := len(s.Agents()); n != agents {
		return fmt.Errorf("clusterbench: restored state has %d agents, want %d", n, agents)
	}
	if n := len(s.Tasks()); n != tasks {
		return fmt.Errorf("clusterbench: restored state has %d tasks, want %d", n, tasks)
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("clusterbench: %w", err)
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("clusterbench: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func restoreFile(f *fsm.FSM, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("clusterbench: %w", err)
	}
	if err := f.Restore(fh); err != nil {
		return fmt.Errorf("clusterbench: restore %s: %w", filepath.Base(path), err)
	}
	return nil
}

// rssMiB reads VmRSS from /proc/self/status (0 where there is none).
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// catchup installs snap as every master's latest snapshot (installState),
// wipes a follower and times its catch-up from empty while one writer
// commits: the leader sends the state as raft's InstallSnapshot.
func catchup(ctx context.Context, dir, snap string, tasks int, p *progress) (secs float64, writes, refused int64, err error) {
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: filepath.Join(dir, "cluster"), RaftProfile: "default",
		Logger: quietLogger()})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("clusterbench: catch-up cluster: %w", err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		return 0, 0, 0, fmt.Errorf("clusterbench: catch-up cluster: %w", err)
	}
	p.printf("catch-up: installing the snapshot as each master's latest and restarting them")
	if err := installState(ctx, c, snap); err != nil {
		return 0, 0, 0, err
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("clusterbench: catch-up cluster after install: %w", err)
	}
	if got := len(leader.State().Tasks()); got != tasks {
		return 0, 0, 0, fmt.Errorf("clusterbench: leader holds %d tasks after install, want %d", got, tasks)
	}
	li := c.LeaderIndex()
	fi := (li + 1) % 3
	c.Kill(fi)
	if err := os.RemoveAll(c.Configs()[fi].DataDir); err != nil {
		return 0, 0, 0, fmt.Errorf("clusterbench: wipe follower: %w", err)
	}
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			l := c.Leader()
			if l == nil { // an election: wait for its winner
				select {
				case <-wctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
			actx, cancel := context.WithTimeout(wctx, 10*time.Second)
			_, err := l.Apply(actx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "catchup-" + strconv.Itoa(i%16), Weight: float64(1 + i%5)}})
			cancel()
			switch {
			case err == nil:
				writes++
			case wctx.Err() != nil:
			case connect.CodeOf(err) == connect.CodeUnavailable:
				refused++
			default:
				werr = err
				return
			}
		}
	}()
	target := leader.Raft().CommitIndex()
	p.printf("catch-up: follower %d wiped and restarted; target index %d", fi, target)
	t0 := time.Now()
	if err := c.Restart(ctx, fi); err != nil {
		stopWriter()
		wg.Wait()
		return 0, 0, 0, fmt.Errorf("clusterbench: restart follower: %w", err)
	}
	m := c.Master(fi)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Minute)
	for m.Raft().AppliedIndex() < target {
		select {
		case <-ctx.Done():
			stopWriter()
			wg.Wait()
			return 0, 0, 0, ctx.Err()
		case <-deadline:
			stopWriter()
			wg.Wait()
			return 0, 0, 0, errors.New("clusterbench: follower did not catch up within 10 minutes")
		case <-tick.C:
		}
	}
	d := time.Since(t0).Seconds()
	stopWriter()
	wg.Wait()
	if werr != nil {
		return 0, 0, refused, fmt.Errorf("clusterbench: writes during catch-up: %w", werr)
	}
	if got := len(m.State().Tasks()); got != tasks {
		return 0, 0, 0, fmt.Errorf("clusterbench: caught-up follower holds %d tasks, want %d", got, tasks)
	}
	p.printf("catch-up: %.2f s (%d writes committed meanwhile, %d refused while leadership moved)", d, writes, refused)
	return d, writes, refused, nil
}

// installState gives every master of c the state in snap: it stops them,
// writes snap into each one's snapshot store as the latest snapshot, at
// the last log index and term with the cluster's own configuration,
// removes the log entries that snapshot covers (so a wiped follower must
// be sent the snapshot, as after log compaction), and restarts them; each
// restores the state at start. (raft.Restore into a running leader holds
// its leader loop for the whole restore, and at 1M tasks lost leadership.)
func installState(ctx context.Context, c *devcluster.Cluster, snap string) error {
	leader := c.Leader()
	if leader == nil {
		return errors.New("clusterbench: install state: no leader")
	}
	cf := leader.Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("clusterbench: install state: configuration: %w", err)
	}
	conf := cf.Configuration()
	if err := leader.Raft().Barrier(time.Minute).Error(); err != nil {
		return fmt.Errorf("clusterbench: install state: barrier: %w", err)
	}
	c.StopMasters()
	for i, mc := range c.Configs() {
		if err := installSnapshot(filepath.Join(mc.DataDir, "raft"), snap, conf); err != nil {
			return fmt.Errorf("clusterbench: install state into master %d: %w", i, err)
		}
	}
	for i := range c.Configs() {
		if err := c.Restart(ctx, i); err != nil {
			return fmt.Errorf("clusterbench: install state: restart master %d: %w", i, err)
		}
	}
	return nil
}

// installSnapshot writes snap into the raft storage under dir as a
// snapshot at the log's last index and term, with conf as the
// configuration at that index, then deletes the log up to it.
func installSnapshot(dir, snap string, conf raft.Configuration) error {
	st, err := master.OpenRaftStorage(dir, quietLogger())
	if err != nil {
		return err
	}
	defer st.Bolt.Close()
	first, err := st.Logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("first index: %w", err)
	}
	last, err := st.Logs.LastIndex()
	if err != nil {
		return fmt.Errorf("last index: %w", err)
	}
	var entry raft.Log
	if err := st.Logs.GetLog(last, &entry); err != nil {
		return fmt.Errorf("last entry %d: %w", last, err)
	}
	fh, err := os.Open(snap)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, trans := raft.NewInmemTransport("") // encodes the legacy peer list the store writes beside conf
	sink, err := st.Snaps.Create(raft.SnapshotVersionMax, last, entry.Term, conf, last, trans)
	if err != nil {
		return fmt.Errorf("create snapshot: %w", err)
	}
	if _, err := io.Copy(sink, fh); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err := st.Logs.DeleteRange(first, last); err != nil {
		return fmt.Errorf("compact log %d-%d: %w", first, last, err)
	}
	return nil
}
