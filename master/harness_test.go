package master

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Harness serves a master's framework and agent handlers over a real FSM
// without Raft, in the manner of Nomad's scheduler Harness: Apply judges a
// command against the FSM's state exactly as the leader does (dry-run, then
// apply; the FSM is the only judge) and applies it at the next index; an
// allocation task runs allocation rounds when the state marks it dirty.
// It always leads. Expiry and liveness do not run: tests of those use a
// real cluster or the liveness tracker.
type Harness struct {
	t   testing.TB
	cfg Config
	log *slog.Logger
	f   *fsm.FSM

	mu    sync.Mutex // serialises Apply, as Raft does
	index uint64

	lead   context.Context
	cancel context.CancelFunc
	dirty  *allocState
	sched  *schedulerServer
	srv    *httptest.Server
	wg     sync.WaitGroup
	done   chan struct{}
}

var _ backend = (*Harness)(nil)

// NewHarness starts a harness; tweak may change the config. It stops when
// the test ends.
func NewHarness(t testing.TB, logger *slog.Logger, tweak func(*Config)) *Harness {
	t.Helper()
	cfg := Config{ID: "h1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", Logger: logger}
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, cfg: cfg, log: cfg.Logger.With("master", cfg.ID), dirty: newAllocState(), done: make(chan struct{})}
	h.lead, h.cancel = context.WithCancel(context.Background())
	h.sched = newSchedulerServer(h)
	h.f = fsm.New(fsm.Config{Logger: h.log.With("component", "fsm"), OnApply: h.sched.OnApply})
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewSchedulerServiceHandler(h.sched))
	mux.Handle(agorav1connect.NewAgentServiceHandler(&agentServer{m: h}))
	h.srv = httptest.NewUnstartedServer(mux)
	h.srv.EnableHTTP2 = true
	h.srv.Start()
	h.wg.Add(1)
	go h.allocate()
	t.Cleanup(h.stop)
	return h
}

func (h *Harness) stop() {
	h.cancel()
	h.sched.broker.closeAll(func() *streamEnd { return &streamEnd{err: errors.New("harness stopped")} })
	h.srv.CloseClientConnections()
	h.srv.Close()
	h.wg.Wait()
	close(h.done)
}

// allocate runs an allocation round whenever the state marks it dirty,
// and again when the earliest decline filter it honoured expires.
func (h *Harness) allocate() {
	defer h.wg.Done()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	cache := &snapCache{}
	for {
		select {
		case <-h.lead.Done():
			return
		case <-h.dirty.dirty:
		case <-wake.C:
		}
		cmd, next := allocationRound(h.State(), h.Now(), h.cfg.OfferTimeout, NewID, allocator.Allocate, cache)
		if cmd != nil {
			_, _ = h.Apply(h.lead, fsm.CmdOffersCreated, cmd)
		}
		wake.Stop()
		if !next.IsZero() {
			wake.Reset(max(next.Sub(h.Now()), time.Millisecond))
		}
	}
}

// Apply judges and applies a command, as Master.Apply does on a leader.
func (h *Harness) Apply(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	return h.apply(ctx, t, msg, false)
}

func (h *Harness) applyChange(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	return h.apply(ctx, t, msg, true)
}

func (h *Harness) apply(ctx context.Context, t fsm.CommandType, msg proto.Message, skipNoop bool) (fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return fsm.Result{}, connect.NewError(connect.CodeOf(err), err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if dryRuns(t) {
		if res, done, err := prejudge(ctx, h.f.State(), t, msg, skipNoop); done {
			return res, err
		}
	}
	b, err := encodeEntry(t, msg)
	if err != nil {
		return fsm.Result{}, err
	}
	h.index++
	res := h.f.ApplyCommand(h.index, b)
	if res.Err != nil {
		return res, RejectionError(res.Err)
	}
	return res, nil
}

// ReadState returns the state: the harness always leads and is caught up.
func (h *Harness) ReadState(context.Context, bool) (*fsm.State, error) { return h.f.State(), nil }

// ReadyState returns the state.
func (h *Harness) ReadyState(context.Context) (*fsm.State, error) { return h.f.State(), nil }

// State returns the state.
func (h *Harness) State() *fsm.State { return h.f.State() }

// FSM returns the state machine.
func (h *Harness) FSM() *fsm.FSM { return h.f }

// Now is the configured clock.
func (h *Harness) Now() time.Time { return h.cfg.Now() }

// ID is the harness master's id.
func (h *Harness) ID() string { return h.cfg.ID }

// Config is the harness configuration.
func (h *Harness) Config() Config { return h.cfg }

// IsLeader is always true.
func (h *Harness) IsLeader() bool { return true }

// Leader names the harness itself.
func (h *Harness) Leader() (string, string) { return h.cfg.ID, h.srv.URL }

// NotLeaderError is never needed: the harness leads.
func (h *Harness) NotLeaderError() *connect.Error {
	return connect.NewError(connect.CodeUnavailable, errors.New("harness: not the leader"))
}

// Done is closed when the harness has stopped.
func (h *Harness) Done() <-chan struct{} { return h.done }

// Logger is the harness logger.
func (h *Harness) Logger() *slog.Logger { return h.log }

// Leadership is the harness's lifetime.
func (h *Harness) Leadership() context.Context { return h.lead }

// MarkAllocationDirty asks for an allocation round.
func (h *Harness) MarkAllocationDirty() { h.dirty.markDirty() }

// HTTPURL is the URL serving the scheduler and agent services.
func (h *Harness) HTTPURL() string { return h.srv.URL }

func (h *Harness) security() *security { return newSecurity(h.cfg) }
