package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// FSM is agora's replicated state machine. It implements raft.FSM: Apply,
// Snapshot and Restore are called by raft from one goroutine; State and
// Changed may be called from any goroutine at any time.
type FSM struct {
	log     *slog.Logger
	onApply func(uint64, []Event)

	mu    sync.Mutex // serialises writers (Apply, Restore)
	state atomic.Pointer[State]
}

var _ raft.FSM = (*FSM)(nil)

// New returns an FSM holding the empty state at index 0.
func New(cfg Config) *FSM {
	f := &FSM{log: cfg.Logger, onApply: cfg.OnApply}
	if f.log == nil {
		f.log = slog.Default()
	}
	s := emptyState()
	s.feed = &feedEntry{all: true}
	f.state.Store(s)
	return f
}

// State returns an O(1) immutable snapshot of the current state.
func (f *FSM) State() *State { return f.state.Load() }

// Changed returns a channel closed at the next applied index (or restore).
func (f *FSM) Changed() <-chan struct{} { return f.state.Load().changed }

// swap installs next and wakes the watchers of the previous state. The
// feed entry of next (one naming every agent when it has none: a restore)
// is linked after the previous state's before next is published.
func (f *FSM) swap(next *State) {
	if next.feed == nil {
		next.feed = &feedEntry{index: next.index, all: true}
	}
	prev := f.state.Load()
	if prev.feed != nil {
		prev.feed.next.Store(next.feed)
	}
	f.state.Store(next)
	close(prev.changed)
}

// unchanged returns the state after an entry that changed nothing.
func unchanged(cur *State, index uint64) *State {
	return &State{index: index, root: cur.root, changed: make(chan struct{}), feed: &feedEntry{index: index}}
}

// Apply applies one Raft log entry and returns a Result. Entries other than
// commands (configuration changes, no-ops) only advance the index. It panics
// on an entry that does not decode: every replica would, and the log is
// then corrupt or written by a newer version without the IgnoreUnknown bit.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.swap(unchanged(f.state.Load(), l.Index))
		return Result{Index: l.Index}
	}
	return f.ApplyCommand(l.Index, l.Data)
}

// ApplyCommand applies an encoded command at the given index; it is what
// Apply does for a command entry, exposed for tests, tools and benchmarks.
func (f *FSM) ApplyCommand(index uint64, data []byte) Result {
	t, m, err := Decode(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: undecodable log entry at index %d: %v", index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.state.Load()
	res := Result{Index: index}
	if m == nil { // unknown type with IgnoreUnknown
		f.log.Warn("fsm: skipping unknown command type", "type", uint8(t), "index", index)
		f.swap(unchanged(cur, index))
		return res
	}
	x := newTxn(cur, index)
	if rej := x.apply(t, m); rej != nil {
		res.Err = rej
		f.swap(unchanged(cur, index))
		return res
	}
	res.IDs, res.Items = x.ids, x.items
	x.bumpAssignEpochs()
	f.swap(&State{index: index, root: x.t.CommitOnly(), changed: make(chan struct{}), feed: x.marks.entry(index)})
	if f.onApply != nil {
		f.onApply(index, x.events)
	}
	return res
}

// ApplyMessage encodes and applies a command at index; a convenience for tests and
// tools that drive an FSM without raft.
func (f *FSM) ApplyMessage(index uint64, t CommandType, m proto.Message) (Result, error) {
	b, err := Encode(t, m)
	if err != nil {
		return Result{}, err
	}
	return f.ApplyCommand(index, b), nil
}

// Snapshot captures the current state in O(1); the returned snapshot's
// Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{state: f.state.Load()}, nil
}

// Restore replaces the state with one read from a snapshot written by
// Persist. The new state is built aside and swapped in at the end; on error
// the current state is kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	next, err := ReadState(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.swap(next)
	return nil
}

type snapshot struct{ state *State }

// Persist writes the state to the sink record by record.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.state.Persist(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the captured state is garbage collected.
func (s *snapshot) Release() {}
