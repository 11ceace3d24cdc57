package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// DefaultWritesInFlight is how many SetRole RPCs a Client keeps in flight
// before it carries further concurrent SetRole calls together
// (WithWritesInFlight). One, as in a group commit: while one RPC is out,
// every call made meanwhile waits and goes in the next one. On the 2-core
// machine of BENCHMARKS.md (64 writers, quiet) 1 gave 17,000 writes/s and
// 62 us of CPU per write, 2 gave 14,500-15,700, 4 gave 12,700-13,600 and 8
// or 16 gave 8,000-9,700: each further RPC in flight costs HTTP/2 work and
// makes the batches smaller, and the leader batches log entries anyway.
const DefaultWritesInFlight = 1

// maxCarried bounds the calls one SetRoles RPC carries (the masters accept
// up to 4096).
const maxCarried = 1024

// WithWritesInFlight sets how many SetRole RPCs the Client keeps in flight
// at once (default DefaultWritesInFlight); the SetRole calls made while
// they are in flight queue and go out together, as one SetRoles RPC, when
// one of them returns. Each call still gets its own answer (its own index,
// or its own error), committed on a quorum like a lone SetRole. n < 0
// turns this off: every SetRole is its own RPC.
func WithWritesInFlight(n int) Option {
	return func(o *options) { o.writesInFlight = n }
}

// carryingOperator is the Client's OperatorServiceClient: SetRole calls
// made concurrently are carried together by SetRoles RPCs (flat
// combining: a caller whose call is queued takes a free slot and sends the
// whole queue, so no goroutine of its own runs the queue); every other
// method is the generated client's.
type carryingOperator struct {
	agorav1connect.OperatorServiceClient
	slots chan struct{}
	// noBatch is set once a master answered Unimplemented to SetRoles (a
	// master from before it): calls then go out one by one.
	noBatch atomic.Bool

	mu    sync.Mutex
	queue []*carried
}

// carried is one queued SetRole call.
type carried struct {
	ctx    context.Context
	req    *connect.Request[agorav1.SetRoleRequest]
	queued bool // guarded by carryingOperator.mu
	done   chan struct{}
	resp   *connect.Response[agorav1.SetRoleResponse]
	err    error
}

func newCarryingOperator(gen agorav1connect.OperatorServiceClient, inFlight int) agorav1connect.OperatorServiceClient {
	if inFlight < 0 {
		return gen
	}
	if inFlight == 0 {
		inFlight = DefaultWritesInFlight
	}
	return &carryingOperator{OperatorServiceClient: gen, slots: make(chan struct{}, inFlight)}
}

// SetRole is the generated SetRole, carried with the concurrent ones when
// other SetRole RPCs already fill the slots.
func (o *carryingOperator) SetRole(ctx context.Context, req *connect.Request[agorav1.SetRoleRequest]) (*connect.Response[agorav1.SetRoleResponse], error) {
	if len(req.Header()) > 0 {
		// Headers of its own (a token, a trace) cannot be merged with
		// other calls': it goes alone.
		return o.OperatorServiceClient.SetRole(ctx, req)
	}
	// A free slot and nothing queued: go at once, as a plain SetRole.
	select {
	case o.slots <- struct{}{}:
		o.mu.Lock()
		empty := len(o.queue) == 0
		o.mu.Unlock()
		if empty {
			resp, err := o.OperatorServiceClient.SetRole(ctx, req)
			<-o.slots
			return resp, err
		}
		<-o.slots
	default:
	}
	p := &carried{ctx: ctx, req: req, queued: true, done: make(chan struct{})}
	o.mu.Lock()
	o.queue = append(o.queue, p)
	o.mu.Unlock()
	for {
		o.mu.Lock()
		queued := p.queued
		o.mu.Unlock()
		if !queued {
			break
		}
		select {
		case o.slots <- struct{}{}:
			o.flushOne()
			<-o.slots
		case <-p.done: // never while queued
		case <-ctx.Done():
			o.mu.Lock()
			still := p.queued
			if still {
				p.queued = false
				p.err = ctxError(ctx.Err()) // never sent
				o.queue = slices.DeleteFunc(o.queue, func(q *carried) bool { return q == p })
			}
			o.mu.Unlock()
			if still {
				return nil, p.err
			}
		}
	}
	select {
	case <-p.done:
		return p.resp, p.err
	case <-ctx.Done():
		// Sent: like a lone call given up in flight, it may or may not
		// be applied.
		return nil, ctxError(ctx.Err())
	}
}

// flushOne, holding a slot, takes the queue (up to maxCarried calls),
// sends it and answers each call.
func (o *carryingOperator) flushOne() {
	o.mu.Lock()
	var batch []*carried
	for len(o.queue) > 0 && len(batch) < maxCarried {
		p := o.queue[0]
		o.queue = o.queue[1:]
		if p.queued { // not given up
			p.queued = false
			batch = append(batch, p)
		}
	}
	if len(o.queue) == 0 {
		o.queue = nil
	}
	o.mu.Unlock()
	switch {
	case len(batch) == 0:
	case len(batch) == 1 || o.noBatch.Load():
		o.sendEach(batch)
	default:
		o.send(batch)
	}
}

// sendEach sends each call of batch as its own SetRole RPC, concurrently.
func (o *carryingOperator) sendEach(batch []*carried) {
	var wg sync.WaitGroup
	for _, p := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.resp, p.err = o.OperatorServiceClient.SetRole(p.ctx, p.req)
			close(p.done)
		}()
	}
	wg.Wait()
}

// send carries batch in one SetRoles RPC and gives each call its own
// answer; a failure of the RPC as a whole is every call's error.
func (o *carryingOperator) send(batch []*carried) {
	ctx, cancel := carrierContext(batch)
	defer cancel()
	roles := make([]*agorav1.Role, len(batch))
	for i, p := range batch {
		roles[i] = p.req.Msg.GetRole()
	}
	resp, err := o.OperatorServiceClient.SetRoles(ctx, connect.NewRequest(&agorav1.SetRolesRequest{Roles: roles}))
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		o.noBatch.Store(true)
		o.sendEach(batch)
		return
	}
	if err == nil && len(resp.Msg.GetResults()) != len(batch) {
		err = connect.NewError(connect.CodeInternal, fmt.Errorf("client: SetRoles answered %d results for %d roles", len(resp.Msg.GetResults()), len(batch)))
	}
	for i, p := range batch {
		if err != nil {
			p.err = err
		} else {
			p.resp, p.err = roleAnswer(resp.Msg.GetResults()[i])
		}
		close(p.done)
	}
}

// carrierContext is the context of a SetRoles RPC carrying batch: the
// latest of the calls' deadlines (a call whose own deadline is sooner
// stops waiting at it), none when any call has none (the Client's call
// timeout still bounds it).
func carrierContext(batch []*carried) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, p := range batch {
		dl, ok := p.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// roleAnswer is one call's answer from its SetRoles result.
func roleAnswer(r *agorav1.SetRoleResult) (*connect.Response[agorav1.SetRoleResponse], error) {
	if r.GetCode() == "" {
		return connect.NewResponse(&agorav1.SetRoleResponse{Index: r.GetIndex()}), nil
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(r.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	return nil, connect.NewError(code, errors.New(r.GetMessage()))
}

// ctxError is the error of a call whose context ended.
func ctxError(err error) error {
	code := connect.CodeCanceled
	if errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, err)
}
