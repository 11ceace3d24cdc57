package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// maxCoalesced bounds the items of one batch entry the leader proposes.
const maxCoalesced = 4096

// coalescer groups concurrent commands of one kind (acknowledgements,
// agents' status update calls) into batch entries (fsm.CmdAcknowledgeBatch,
// fsm.CmdStatusUpdateBatch): while inFlight batches are being committed the
// next calls queue, and the whole queue goes out as the next entry. A call is
// judged alone first, exactly as applyChange would judge it (a rejection
// or a no-op never reaches the log); the FSM judges every item again on
// every replica and a refused item does not stop the others.
type coalescer[M proto.Message] struct {
	b      backend
	single fsm.CommandType
	batch  fsm.CommandType
	wrap   func([]M) proto.Message

	// inFlight bounds the batch entries being committed at once. They
	// reach the log in queue order when the backend proposes
	// asynchronously (Master); a backend that does not (the handler tests'
	// harness) gets one at a time unless the commands commute.
	inFlight int
	// commute: the commands' effects do not depend on their order, so
	// without an asyncProposer inFlight entries may still be in flight.
	commute bool

	// async is b when it proposes without waiting: one flush goroutine
	// then proposes in queue order, and slots holds one token per entry in
	// flight.
	async asyncProposer
	slots chan struct{}
	// flushers bounds the flush goroutines: 1, or inFlight for commuting
	// commands on a backend that cannot propose without waiting.
	flushers int

	mu      sync.Mutex
	queue   []*coalesced[M]
	running int // flush goroutines
}

// coalesced is one queued call.
type coalesced[M proto.Message] struct {
	item M
	done chan struct{}
	res  fsm.Result
	err  error
}

func newCoalescer[M proto.Message](b backend, single, batch fsm.CommandType, inFlight int, commute bool, wrap func([]M) proto.Message) *coalescer[M] {
	c := &coalescer[M]{b: b, single: single, batch: batch, inFlight: max(inFlight, 1), commute: commute, wrap: wrap, flushers: 1}
	c.async, _ = b.(asyncProposer)
	c.slots = make(chan struct{}, c.inFlight)
	if c.async == nil && commute {
		c.flushers = c.inFlight
	}
	return c
}

// submit judges item against the leader's state, queues it when it
// changes something and waits for the batch that carries it.
func (c *coalescer[M]) submit(ctx context.Context, item M) (fsm.Result, error) {
	res, errs, err := c.submitAll(ctx, []M{item})
	if err != nil {
		return fsm.Result{}, err
	}
	return res[0], errs[0]
}

// submitAll is submit for many items at once (judged against one state,
// queued together); it returns each item's result and error, or err
// alone when none could be judged (not the leader, ctx ended).
func (c *coalescer[M]) submitAll(ctx context.Context, items []M) ([]fsm.Result, []error, error) {
	st, err := c.b.ReadyState(ctx)
	if err != nil {
		return nil, nil, err
	}
	res, errs := make([]fsm.Result, len(items)), make([]error, len(items))
	var queued []*coalesced[M]
	var at []int
	for i, item := range items {
		if r, done, err := prejudge(ctx, st, c.single, item, true); done {
			if err != nil && ctx.Err() != nil {
				return nil, nil, err // no slot before ctx ended: not a verdict
			}
			res[i], errs[i] = r, err
			continue
		}
		queued = append(queued, &coalesced[M]{item: item, done: make(chan struct{})})
		at = append(at, i)
	}
	if len(queued) == 0 {
		return res, errs, nil
	}
	c.mu.Lock()
	c.queue = append(c.queue, queued...)
	start := c.running < c.flushers
	if start {
		c.running++
	}
	c.mu.Unlock()
	if start {
		go c.flush()
	}
	for k, p := range queued {
		select {
		case <-p.done:
			res[at[k]], errs[at[k]] = p.res, p.err
		case <-ctx.Done():
			return nil, nil, ctxError(ctx.Err())
		}
	}
	return res, errs, nil
}

// asyncProposer is a backend that can propose without waiting
// (Master.proposeAsync), so that batches stay in queue order with several
// in flight.
type asyncProposer interface {
	proposeAsync(t fsm.CommandType, msg proto.Message) (wait func() (fsm.Result, error), err error)
}

// flush proposes the queue, batch after batch, until it is empty. With an
// asyncProposer one flush goroutine proposes in queue order, up to
// inFlight entries waiting for their commit at once; otherwise up to
// inFlight flush goroutines each propose and wait.
func (c *coalescer[M]) flush() {
	ordered := c.async != nil
	for {
		if ordered {
			c.slots <- struct{}{}
		}
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running--
			c.mu.Unlock()
			if ordered {
				<-c.slots
			}
			return
		}
		n := min(len(c.queue), maxCoalesced)
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		c.mu.Unlock()

		items := make([]M, len(batch))
		for i, p := range batch {
			items[i] = p.item
		}
		if !ordered {
			ctx, cancel := context.WithTimeout(context.Background(), defaultApplyTimeout)
			res, err := c.b.Apply(ctx, c.batch, c.wrap(items))
			cancel()
			c.answer(batch, res, err)
			continue
		}
		wait, err := c.async.proposeAsync(c.batch, c.wrap(items))
		if err != nil {
			c.answer(batch, fsm.Result{}, err)
			<-c.slots
			continue
		}
		go func() {
			res, err := wait()
			c.answer(batch, res, err)
			<-c.slots
		}()
	}
}

// answer gives each queued call of batch its verdict from the entry's
// result.
func (c *coalescer[M]) answer(batch []*coalesced[M], res fsm.Result, err error) {
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.res, p.err = itemVerdict(res, i)
		}
		close(p.done)
	}
}

// itemVerdict is item i's result and error from its batch entry's result.
func itemVerdict(res fsm.Result, i int) (fsm.Result, error) {
	if i < len(res.Items) && res.Items[i] != nil {
		return fsm.Result{Index: res.Index, Err: res.Items[i]}, RejectionError(res.Items[i])
	}
	return fsm.Result{Index: res.Index}, nil
}

// batcher is the leader's coalescer of batchable writes of any kind
// (fsm.Batchable: role, kill, revive, suppress, demand and decline calls)
// into generic fsm.CmdBatch entries. The caller judged its command alone
// against the leader's state first (apply's prejudge), so a refused
// command never reaches the log. While entries are being committed (at
// most maxBatchesInFlight) the next commands queue, and the queue goes out
// as the next entry; a queue of one goes out as that command's own entry.
// The FSM judges every item again on every replica, in log order; a
// refused item changes nothing and each caller gets its own item's
// verdict.
//
// There is no flushing goroutine: the callers themselves propose (flat
// combining). A caller whose command is queued takes a free slot, proposes
// the whole queue as one entry, waits for that entry and answers every
// item of it, then frees the slot; callers that find no free slot wait for
// one, or for a caller holding one to carry their command. An entry thus
// goes out from a goroutine already running, without a hand-off to a
// flusher and another to an answerer, each of which waits its turn in a
// run queue full of RPC handlers under load.
type batcher struct {
	m *Master
	// slots holds one token per entry in flight.
	slots chan struct{}
	// propose serialises taking the queue and handing it to raft, so that
	// entries reach the log in queue order.
	propose sync.Mutex

	mu    sync.Mutex
	queue []*batched
}

// maxBatchesInFlight bounds the batch entries proposed but not yet
// answered: one would leave the log idle while an entry's answer travels
// back; a few keep raft's pipeline fed while the queue still grows into
// large entries.
const maxBatchesInFlight = 4

func newBatcher(m *Master) *batcher {
	return &batcher{m: m, slots: make(chan struct{}, maxBatchesInFlight)}
}

// batched is one queued write.
type batched struct {
	ctx    context.Context
	t      fsm.CommandType
	msg    proto.Message
	queued bool // guarded by batcher.mu: not yet taken into an entry
	done   chan struct{}
	res    fsm.Result
	err    error
}

// submit queues a judged command and waits for the entry that carries it.
// Like a lone proposal, once queued it is answered by the log (or by an
// error saying whether it may have been applied), not by ctx: only an item
// still queued when its ctx ends is dropped, with ctx's error.
func (b *batcher) submit(ctx context.Context, t fsm.CommandType, msg proto.Message) (fsm.Result, error) {
	p := &batched{ctx: ctx, t: t, msg: msg, done: make(chan struct{})}
	b.enqueue(p)
	b.await(p)
	return p.res, p.err
}

// enqueue queues ps together, in order; each must then be awaited.
func (b *batcher) enqueue(ps ...*batched) {
	b.mu.Lock()
	for _, p := range ps {
		p.queued = true
	}
	b.queue = append(b.queue, ps...)
	b.mu.Unlock()
}

// await returns once p is answered. While p is still queued its caller
// competes for a slot and, holding one, proposes the queue (p among it,
// unless another caller took p first) and answers that entry.
func (b *batcher) await(p *batched) {
	for {
		b.mu.Lock()
		queued := p.queued
		b.mu.Unlock()
		if !queued {
			<-p.done
			return
		}
		select {
		case <-p.done: // never while queued; for completeness
			return
		case b.slots <- struct{}{}:
			b.flushOne()
			<-b.slots
		}
	}
}

// flushOne, called holding a slot, takes the queue (up to maxCoalesced),
// proposes its live items as one entry and answers them once the entry is
// applied.
func (b *batcher) flushOne() {
	b.propose.Lock()
	b.mu.Lock()
	n := min(len(b.queue), maxCoalesced)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the drained backing array go
	}
	for _, p := range batch {
		p.queued = false
	}
	b.mu.Unlock()
	if n == 0 {
		b.propose.Unlock()
		return
	}
	live, fut := b.proposeEntry(batch)
	b.propose.Unlock()
	if fut != nil {
		b.answer(live, fut)
	}
}

// proposeEntry enqueues one entry holding batch's live items; it answers
// the items it cannot propose and returns the others with the entry's
// future (nil when none is left).
func (b *batcher) proposeEntry(batch []*batched) ([]*batched, raft.ApplyFuture) {
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.err = ctxError(err) // never proposed: definitely not applied
			close(p.done)
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return nil, nil
	}
	data, err := encodeBatch(live)
	if err != nil {
		for _, p := range live {
			p.err = connect.NewError(connect.CodeInternal, err)
			close(p.done)
		}
		return nil, nil
	}
	return live, b.m.raft.Apply(data, defaultApplyTimeout)
}

// answer waits for the entry carrying live and gives each item its own
// verdict.
func (b *batcher) answer(live []*batched, fut raft.ApplyFuture) {
	res, err := b.m.result(fut)
	for i, p := range live {
		switch {
		case err != nil:
			p.err = err
		case len(live) == 1:
			p.res = res
			if res.Err != nil {
				p.err = RejectionError(res.Err)
			}
		case res.Err != nil: // the entry itself refused: never for a non-empty batch
			p.res, p.err = res, RejectionError(res.Err)
		default:
			p.res, p.err = itemVerdict(res, i)
		}
		close(p.done)
	}
}

// encodeBatch encodes the entry for live: the command itself when alone,
// else a Batch of them in queue order.
func encodeBatch(live []*batched) ([]byte, error) {
	if len(live) == 1 {
		b, err := fsm.Encode(live[0].t, live[0].msg)
		if err != nil {
			return nil, fmt.Errorf("encode %v: %w", live[0].t, err)
		}
		return b, nil
	}
	c := &agorav1.BatchCommand{Items: make([]*agorav1.BatchItem, len(live))}
	for i, p := range live {
		it, err := fsm.NewBatchItem(p.t, p.msg)
		if err != nil {
			return nil, err
		}
		c.Items[i] = it
	}
	b, err := fsm.Encode(fsm.CmdBatch, c)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	return b, nil
}

// ctxError is the Connect error for a call whose ctx ended.
func ctxError(err error) *connect.Error {
	code := connect.CodeCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, err)
}

// maxApplyAll bounds the commands of one applyAll (one batch RPC).
const maxApplyAll = maxCoalesced

// applyAll is Apply for many batchable commands of type t at once, for a
// batch RPC: each is judged alone against the leader's state (a refused
// one never reaches the log) and the others are queued together in the
// batcher, so they travel in as few entries as concurrent calls would.
// res and errs hold each command's own result and error (a rejection, as
// Apply would answer it alone). err is for the call as a whole: not the
// leader, ctx ended, or the log failed under some of the commands (then,
// when any other command of the call was applied or may have been, it is
// marked outcome unknown: a client must not resend the call).
func (m *Master) applyAll(ctx context.Context, t fsm.CommandType, msgs []proto.Message) (res []fsm.Result, errs []error, err error) {
	start := time.Now()
	if !fsm.Batchable(t) || !dryRuns(t) {
		return nil, nil, connect.NewError(connect.CodeInternal, fmt.Errorf("applyAll: %v is not a batchable command", t))
	}
	if m.raft == nil || m.raft.State() != raft.Leader {
		return nil, nil, m.NotLeaderError()
	}
	if m.stopping.Load() {
		return nil, nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", m.cfg.ID))
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, connect.NewError(connect.CodeOf(err), err)
	}
	st, err := m.ReadyState(ctx)
	if err != nil {
		return nil, nil, err
	}
	res, errs = make([]fsm.Result, len(msgs)), make([]error, len(msgs))
	var queued []*batched
	var at []int
	for i, msg := range msgs {
		if r, done, err := prejudge(ctx, st, t, msg, false); done {
			if err != nil && ctx.Err() != nil {
				return nil, nil, err // no slot before ctx ended: not a verdict
			}
			res[i], errs[i] = r, err
			continue
		}
		queued = append(queued, &batched{ctx: ctx, t: t, msg: msg, done: make(chan struct{})})
		at = append(at, i)
	}
	m.batch.enqueue(queued...)
	var failed *connect.Error // the first error that is not a verdict
	applied := false          // some command's entry committed, or may have
	for k, p := range queued {
		m.batch.await(p)
		res[at[k]], errs[at[k]] = p.res, p.err
		switch {
		case p.err == nil || p.res.Err != nil: // committed: applied or refused by the FSM
			applied = true
		default:
			ce := connect.NewError(connect.CodeInternal, p.err)
			errors.As(p.err, &ce)
			if ce.Meta().Get(outcomeHeader) == "unknown" {
				applied = true
			}
			if failed == nil {
				failed = ce
			}
		}
	}
	for i := range msgs {
		m.metrics.observeApply(t, start, errs[i])
	}
	if failed != nil {
		if applied {
			return nil, nil, outcomeUnknown(cloneError(failed))
		}
		return nil, nil, failed
	}
	return res, errs, nil
}

// outcomeHeader is the header outcomeUnknown sets (rpc/client.OutcomeHeader).
const outcomeHeader = "Agora-Outcome"

// cloneError copies e (code, cause, metadata, details), so that marking
// the copy leaves e, which other calls of the same entry share, alone.
func cloneError(e *connect.Error) *connect.Error {
	c := connect.NewError(e.Code(), e.Unwrap())
	for k, v := range e.Meta() {
		c.Meta()[k] = slices.Clone(v)
	}
	for _, d := range e.Details() {
		c.AddDetail(d)
	}
	return c
}
