package check

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Deliberate names frameworks the workload tore down itself (or had an
	// operator tear down); their teardowns need no failover timeout.
	Deliberate map[string]bool
	// MaxViolations stops collecting after this many (0 = 100).
	MaxViolations int
	// Logger receives the FSM's logs; nil discards them.
	Logger *slog.Logger
	// At, when not 0, also keeps the state right after entry At in
	// ReplayResult.AtState (for checks that concern a cut of the run, such
	// as delivery up to the moment the frameworks stopped listening).
	At uint64
}

// ReplayResult is what Replay found.
type ReplayResult struct {
	// SnapshotIndex is the index of the snapshot replay started from (0 =
	// none); FirstIndex and LastIndex bound the entries applied.
	SnapshotIndex, FirstIndex, LastIndex uint64
	// Entries is how many log entries were applied and checked.
	Entries int
	// Commands counts the applied command entries by type.
	Commands map[fsm.CommandType]int
	// Offers counts offers created in the replayed range; OffersOpen those
	// still outstanding at the end.
	Offers, OffersOpen int
	// Preemptions is the preemption checker's ledger: decisions applied
	// in the replayed range, their victims, the PREEMPTED kills.
	Preemptions *Preemptions
	// Final is the state after the last entry.
	Final *fsm.State
	// AtState is the state after entry ReplayOptions.At (the last entry at
	// or before it); nil when At is 0 or precedes the replayed range.
	AtState *fsm.State
	// Violations found: double allocation at some index, an offer that
	// disappeared without being accepted, declined, rescinded or expired, a
	// framework torn down before its failover timeout, a preemption that
	// broke its rules (see Preemptions).
	Violations []Violation
}

// RaftDir is where a master keeps its Raft storage inside its data
// directory (raft.db and snapshots/).
func RaftDir(dataDir string) string { return filepath.Join(dataDir, "raft") }

// Replay opens the Raft storage of a stopped master (dataDir is the
// master's --data-dir) read-only, restores its latest snapshot into a fresh
// FSM, applies every later entry in order and checks the state after each:
// CheckAllocation on ViewOf(state), CheckVolumeExclusive on
// VolumeUsesOf(state), the offer lifecycle (every offer that
// leaves the state does so accepted, declined, rescinded or expired),
// teardowns (only deliberate ones, or after the failover timeout) and
// preemptions (every applied Preempt entry judged against the state it was
// applied to, every PREEMPTED status matched to a decision: Preemptions).
func Replay(dataDir string, o ReplayOptions) (*ReplayResult, error) {
	if o.MaxViolations <= 0 {
		o.MaxViolations = 100
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir := RaftDir(dataDir)
	dbPath := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("check: replay: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath,
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
	if err != nil {
		return nil, fmt.Errorf("check: replay: open %s: %w", dbPath, err)
	}
	defer store.Close()

	var removed, statuses []fsm.Event
	f := fsm.New(fsm.Config{Logger: logger, OnApply: func(_ uint64, evs []fsm.Event) {
		for _, e := range evs {
			switch e.Kind {
			case fsm.EventOfferRemoved:
				removed = append(removed, e)
			case fsm.EventTaskStatus:
				statuses = append(statuses, e)
			}
		}
	}})
	res := &ReplayResult{Commands: map[fsm.CommandType]int{}}
	if snapIdx, err := restoreLatest(dir, f); err != nil {
		return nil, err
	} else {
		res.SnapshotIndex = snapIdx
	}
	first, err := store.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("check: replay: first index: %w", err)
	}
	last, err := store.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("check: replay: last index: %w", err)
	}
	if first <= res.SnapshotIndex {
		first = res.SnapshotIndex + 1
	}
	res.FirstIndex, res.LastIndex = first, last
	add := func(vs ...Violation) {
		for _, v := range vs {
			if len(res.Violations) < o.MaxViolations {
				res.Violations = append(res.Violations, v)
			}
		}
	}
	add(CheckAllocation(f.State().Index(), ViewOf(f.State()))...)
	add(CheckVolumeExclusive(f.State().Index(), VolumeUsesOf(f.State()))...)
	offers := offerSet(f.State())
	res.Preemptions = NewPreemptions(f.State())
	if o.At > 0 && f.State().Index() <= o.At {
		res.AtState = f.State()
	}
	for idx := first; idx <= last && first > 0; idx++ {
		var l raft.Log
		if err := store.GetLog(idx, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return nil, fmt.Errorf("check: replay: entry %d: %w", idx, err)
		}
		before := f.State()
		if l.Type == raft.LogCommand {
			add(checkTeardown(before, idx, l.Data, o.Deliberate)...)
		}
		removed, statuses = removed[:0], statuses[:0]
		r := apply(f, &l)
		res.Entries++
		if l.Type == raft.LogCommand && len(l.Data) > 0 {
			if t, _, err := fsm.Decode(l.Data); err == nil {
				res.Commands[t]++
			}
		}
		after := f.State()
		if l.Type == raft.LogCommand && r.Err == nil {
			add(checkPreempt(res.Preemptions, before, idx, l.Data)...)
		}
		for _, e := range statuses {
			t, _ := after.Task(e.Status.GetFrameworkId(), e.Status.GetTaskId())
			add(res.Preemptions.Killed(idx, e.Status, t)...)
		}
		add(CheckAllocation(idx, ViewOf(after))...)
		add(CheckVolumeExclusive(idx, VolumeUsesOf(after))...)
		next := offerSet(after)
		reasons := map[string]fsm.Event{}
		for _, e := range removed {
			reasons[e.OfferID] = e
		}
		for id := range next {
			if !offers[id] {
				res.Offers++
			}
		}
		for id := range offers {
			if next[id] {
				continue
			}
			e, ok := reasons[id]
			if !ok {
				add(violation("offer-lifecycle", "index %d: offer %s left the state with no accept, decline, rescind or expiry", idx, id))
			} else if !OfferEnded(e.Reason, e.Rescind) {
				add(violation("offer-lifecycle", "index %d: offer %s removed for %q", idx, id, e.Reason))
			}
		}
		offers = next
		if o.At > 0 && idx <= o.At {
			res.AtState = after
		}
	}
	res.OffersOpen = len(offers)
	res.Final = f.State()
	return res, nil
}

func apply(f *fsm.FSM, l *raft.Log) fsm.Result {
	defer func() {
		if r := recover(); r != nil {
			panic(fmt.Sprintf("check: replay: fsm panicked at index %d: %v", l.Index, r))
		}
	}()
	r, _ := f.Apply(l).(fsm.Result)
	return r
}

// checkPreempt judges an accepted Preempt entry against the state before
// it; other entries pass.
func checkPreempt(p *Preemptions, before *fsm.State, idx uint64, data []byte) []Violation {
	t, m, err := fsm.Decode(data)
	if err != nil || t != fsm.CmdPreempt {
		return nil
	}
	cmd, ok := m.(*agorav1.PreemptCommand)
	if !ok {
		return nil
	}
	return p.Decided(idx, DecisionOf(before, cmd.GetPreemption()))
}

// OfferEnded reports whether an offer's removal is one of its legitimate
// ends: accepted, declined, rescinded (told to the framework, or implied
// because the framework disconnected or was torn down) or expired.
func OfferEnded(reason string, rescind bool) bool {
	if rescind || reason == "framework disconnected" || reason == "framework torn down" {
		return true
	}
	for _, p := range []string{"accepted", "declined", "rescinded", "expired"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

func offerSet(st *fsm.State) map[string]bool {
	m := map[string]bool{}
	for _, o := range st.Offers() {
		m[o.GetId()] = true
	}
	return m
}

// checkTeardown verifies a TeardownFramework entry against the state
// before it: unless deliberate, the framework must be disconnected for at
// least its failover timeout, by the leader's stamped time.
func checkTeardown(before *fsm.State, idx uint64, data []byte, deliberate map[string]bool) []Violation {
	t, m, err := fsm.Decode(data)
	if err != nil || t != fsm.CmdTeardownFramework {
		return nil
	}
	cmd, ok := m.(*agorav1.TeardownFrameworkCommand)
	if !ok || deliberate[cmd.GetFrameworkId()] {
		return nil
	}
	fw, ok := before.Framework(cmd.GetFrameworkId())
	if !ok || fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return nil // rejected by the FSM: nothing torn down
	}
	return TeardownTimely(idx, fw, cmd.GetNow().AsTime())
}

// TeardownTimely checks one teardown of fw at time now (not requested by
// the framework or an operator): fw must be disconnected and its failover
// timeout elapsed since it disconnected.
func TeardownTimely(idx uint64, fw *agorav1.Framework, now time.Time) []Violation {
	if fw.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED || fw.GetDisconnectedAt() == nil {
		return []Violation{violation("teardown", "index %d: framework %s torn down while %s", idx, fw.GetId(), fw.GetState())}
	}
	timeout := time.Duration(fw.GetInfo().GetFailoverTimeoutSeconds() * float64(time.Second))
	if gone := now.Sub(fw.GetDisconnectedAt().AsTime()); gone < timeout {
		return []Violation{violation("teardown", "index %d: framework %s torn down %s after disconnecting, before its failover timeout %s",
			idx, fw.GetId(), gone.Round(time.Millisecond), timeout)}
	}
	return nil
}

// restoreLatest restores the newest readable snapshot under dir into f and
// returns its index (0 when there is none).
func restoreLatest(dir string, f *fsm.FSM) (uint64, error) {
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); err != nil {
		return 0, nil
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		return 0, fmt.Errorf("check: replay: snapshot store: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return 0, fmt.Errorf("check: replay: list snapshots: %w", err)
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].Index > metas[j].Index })
	for _, m := range metas {
		_, rc, err := snaps.Open(m.ID)
		if err != nil {
			continue
		}
		if err := f.Restore(rc); err != nil {
			return 0, fmt.Errorf("check: replay: restore snapshot %s: %w", m.ID, err)
		}
		return m.Index, nil
	}
	return 0, nil
}
