package master

import (
	"context"
	"errors"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
)

// maxCoalesced bounds the items of one batch entry the leader proposes.
const maxCoalesced = 4096

// coalescer groups concurrent commands of one kind (acknowledgements,
// agents' status update calls) into batch entries (fsm.CmdAcknowledgeBatch,
// fsm.CmdStatusUpdateBatch): while one batch is being committed the next
// calls queue, and the whole queue goes out as the next entry. A call is
// judged alone first, exactly as applyChange would judge it (a rejection
// or a no-op never reaches the log); the FSM judges every item again on
// every replica and a refused item does not stop the others.
type coalescer[M proto.Message] struct {
	b      backend
	single fsm.CommandType
	batch  fsm.CommandType
	wrap   func([]M) proto.Message

	mu      sync.Mutex
	queue   []*coalesced[M]
	running bool
}

// coalesced is one queued call.
type coalesced[M proto.Message] struct {
	item M
	done chan struct{}
	res  fsm.Result
	err  error
}

func newCoalescer[M proto.Message](b backend, single, batch fsm.CommandType, wrap func([]M) proto.Message) *coalescer[M] {
	return &coalescer[M]{b: b, single: single, batch: batch, wrap: wrap}
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
		if r, done, err := prejudge(st, c.single, item, true); done {
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
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.flush()
	}
	for k, p := range queued {
		select {
		case <-p.done:
			res[at[k]], errs[at[k]] = p.res, p.err
		case <-ctx.Done():
			err := ctx.Err()
			code := connect.CodeCanceled
			if errors.Is(err, context.DeadlineExceeded) {
				code = connect.CodeDeadlineExceeded
			}
			return nil, nil, connect.NewError(code, err)
		}
	}
	return res, errs, nil
}

// flush proposes the queue, batch after batch, until it is empty.
func (c *coalescer[M]) flush() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.mu.Unlock()
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
		ctx, cancel := context.WithTimeout(context.Background(), defaultApplyTimeout)
		res, err := c.b.Apply(ctx, c.batch, c.wrap(items))
		cancel()
		for i, p := range batch {
			switch {
			case err != nil:
				p.err = err
			case i < len(res.Items) && res.Items[i] != nil:
				p.res = fsm.Result{Index: res.Index, Err: res.Items[i]}
				p.err = RejectionError(res.Items[i])
			default:
				p.res = fsm.Result{Index: res.Index}
			}
			close(p.done)
		}
	}
}
