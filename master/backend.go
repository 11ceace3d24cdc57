package master

import (
	"context"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
)

// backend is what the framework and agent RPC handlers need of a master:
// the replicated state, the one write path (Apply: dry-run against the
// leader's state after its barrier, then propose), the leader's clock and
// identity, and the current leadership. *Master is the real one; the
// handler tests use an FSM-backed fake without Raft (harness_test.go), in
// the manner of Nomad's scheduler Harness.
type backend interface {
	// Apply proposes a command; a rejection comes back as the Result's Err
	// and as its Connect error.
	Apply(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error)
	// applyChange is Apply that answers a command changing nothing without
	// a log entry.
	applyChange(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error)
	// ReadState is a linearizable read (or the local state with stale).
	ReadState(ctx context.Context, stale bool) (*fsm.State, error)
	// ReadyState is the state a leader judges requests against.
	ReadyState(ctx context.Context) (*fsm.State, error)
	// State is the local state, possibly stale.
	State() *fsm.State
	// FSM is the local state machine (for its change notifications).
	FSM() *fsm.FSM
	// Now is the leader's clock.
	Now() time.Time
	// ID is this master's id.
	ID() string
	// Config is this master's configuration.
	Config() Config
	// IsLeader reports whether this master leads.
	IsLeader() bool
	// Leader is the current leader's id and URL as this master sees them.
	Leader() (id, httpURL string)
	// NotLeaderError is the redirect a follower answers with.
	NotLeaderError() *connect.Error
	// Done is closed when the master has stopped.
	Done() <-chan struct{}
	// Logger is the master's logger.
	Logger() *slog.Logger
	// Leadership is the context of the current leadership (nil when not
	// leading); it is cancelled when leadership ends.
	Leadership() context.Context
	// MarkAllocationDirty asks for an allocation round.
	MarkAllocationDirty()
	// security is the edge's authentication, ACL and audit log.
	security() *security
}

var _ backend = (*Master)(nil)

// Logger returns the master's logger.
func (m *Master) Logger() *slog.Logger { return m.log }

// Leadership returns the context of the current leadership, nil when this
// master does not lead or has not finished its leadership Barrier.
func (m *Master) Leadership() context.Context { return m.leader.Context() }

// MarkAllocationDirty asks the leader for an allocation round (a no-op on
// a follower until it leads).
func (m *Master) MarkAllocationDirty() { m.leader.alloc.markDirty() }
