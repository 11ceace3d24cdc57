package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// targetKey carries the master an attempt goes to, for rewriteTransport.
type targetKey struct{}

// rewriteTransport sends every request to the master its context names
// (else the preferred one) and marks failures to get an answer.
type rewriteTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tgt, _ := req.Context().Value(targetKey{}).(string)
	if tgt == "" {
		tgt = t.c.Target()
	}
	if tgt == "" {
		return nil, &unreachableError{target: "(none)", err: ErrNoMasters}
	}
	u, err := t.c.parsedAddr(tgt)
	if err != nil {
		return nil, &unreachableError{target: tgt, err: err}
	}
	if req.URL.Scheme != u.Scheme || req.URL.Host != u.Host {
		// A deep copy (Clone): connect reuses the header map of a call
		// for its next attempt while the transport of an abandoned one
		// may still read it.
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host, req.Host = u.Scheme, u.Host, ""
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, &unreachableError{target: tgt, err: err}
	}
	return resp, nil
}

// parsedAddr is url.Parse(addr), remembered: every attempt needs its
// master's scheme and host, and a Client knows few masters.
func (c *Client) parsedAddr(addr string) (*url.URL, error) {
	if u, ok := c.parsed.Load(addr); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	c.parsed.Store(addr, u)
	return u, nil
}

// CloseIdleConnections closes the idle connections of the wrapped transport.
func (t *rewriteTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// unreachableError marks a call that got no answer from its master.
type unreachableError struct {
	target string
	err    error
}

func (e *unreachableError) Error() string { return e.target + ": " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// sendTrace tells whether an attempt can have reached its master: it saw
// a connection being dialled that never came up.
type sendTrace struct {
	dialing   atomic.Bool
	connected atomic.Bool
}

func (s *sendTrace) with(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		DNSStart:     func(httptrace.DNSStartInfo) { s.dialing.Store(true) },
		ConnectStart: func(string, string) { s.dialing.Store(true) },
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				s.connected.Store(true)
			}
		},
		GotConn: func(httptrace.GotConnInfo) { s.connected.Store(true) },
	})
}

// neverSent reports whether the request of a failed attempt certainly
// never left this process: the dial failed, or a dial was seen and no
// connection came up. A reused connection counts as sent.
func neverSent(err error, tr *sendTrace) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if errors.Is(err, ErrNoMasters) {
		return true
	}
	return tr.dialing.Load() && !tr.connected.Load()
}

// outcome classifies a failed attempt.
type outcome int

const (
	// final: an answer retrying cannot change; return it.
	final outcome = iota
	// redirected: a follower named the leader; nothing was applied.
	redirected
	// notApplied: the master refused before proposing anything (no leader
	// known, leader not ready), or the request was never sent.
	notApplied
	// unknown: the request may have been applied (no answer in time after
	// sending, leadership lost in flight).
	unknown
)

// classify tells what a failed attempt means, and whether its master
// failed to answer (it is then passed over for a while).
func classify(err error, attemptExpired bool, tr *sendTrace) (o outcome, silent bool) {
	var ce *connect.Error
	if errors.As(err, &ce) && connect.IsWireError(err) {
		switch ce.Code() {
		case connect.CodeUnavailable:
			if ce.Meta().Get(OutcomeHeader) == "unknown" {
				return unknown, false
			}
			if _, _, ok := LeaderFromError(err); ok {
				return redirected, false
			}
			return notApplied, false
		case connect.CodeDeadlineExceeded, connect.CodeCanceled:
			// The master gave up on the call: overloaded, or a leader
			// cut off from its quorum.
			return unknown, true
		}
		return final, false
	}
	if tlsRefused(err) {
		return final, false // a certificate does not get better by retrying
	}
	var ue *unreachableError
	if attemptExpired || errors.As(err, &ue) || connect.CodeOf(err) == connect.CodeUnavailable {
		if neverSent(err, tr) {
			return notApplied, true
		}
		return unknown, true
	}
	return final, false
}

// interceptor runs unary calls through Client.do and bounds the opening of
// server streams.
type interceptor struct{ c *Client }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		return i.c.do(ctx, req, next)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		target := i.c.Target()
		sctx, cancel := context.WithCancel(context.WithValue(ctx, targetKey{}, target))
		s := &openingStream{c: i.c, target: target, cancel: cancel}
		s.timer = time.AfterFunc(i.c.opts.streamOpen, func() {
			s.expired.Store(true)
			i.c.Skip(target)
			cancel()
		})
		s.StreamingClientConn = next(sctx, spec)
		if down := i.c.passedOver(); down != "" {
			s.RequestHeader().Set(UnreachableHeader, down)
		}
		return s
	}
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// openingStream cancels a stream whose first message does not arrive in
// time, and follows the redirect a stream ends with, so that the caller's
// next stream goes to the leader.
type openingStream struct {
	connect.StreamingClientConn
	c       *Client
	target  string
	cancel  context.CancelFunc
	timer   *time.Timer
	expired atomic.Bool
	once    sync.Once
}

// Send passes on the request; with Connect, sending a stream's request
// can already wait for the master.
func (s *openingStream) Send(msg any) error {
	err := s.StreamingClientConn.Send(msg)
	if err != nil {
		err = s.failed(err)
	}
	return err
}

// CloseRequest passes on the end of the request.
func (s *openingStream) CloseRequest() error {
	err := s.StreamingClientConn.CloseRequest()
	if err != nil {
		err = s.failed(err)
	}
	return err
}

// Receive passes on a message, ending the open timeout at the first.
func (s *openingStream) Receive(msg any) error {
	err := s.StreamingClientConn.Receive(msg)
	s.once.Do(func() {
		s.timer.Stop()
		if err == nil {
			s.c.answered(s.target, "")
		}
	})
	if err == nil {
		return nil
	}
	return s.failed(err)
}

// failed learns from a stream's error: a redirect moves the preferred
// master to the leader, no answer passes the master over.
func (s *openingStream) failed(err error) error {
	if s.expired.Load() {
		return connect.NewError(connect.CodeUnavailable,
			fmt.Errorf("client: %s sent nothing within %s: %w", s.target, s.c.opts.streamOpen, err))
	}
	var ue *unreachableError
	if !s.c.Follow(s.target, err) && errors.As(err, &ue) {
		s.c.skipFailed(s.target, err, false)
	}
	return err
}

func (s *openingStream) CloseResponse() error {
	s.once.Do(func() { s.timer.Stop() })
	defer s.cancel()
	return s.StreamingClientConn.CloseResponse()
}

// longPollWait is the wait a long-poll request asks the server for.
func longPollWait(msg any) time.Duration {
	if w, ok := msg.(interface{ GetWaitSeconds() float64 }); ok && w.GetWaitSeconds() > 0 {
		return time.Duration(w.GetWaitSeconds() * float64(time.Second))
	}
	return 0
}

// do runs one unary call: attempts at the preferred master, following
// redirects and passing over masters that do not answer, retrying as the
// call's retry policy allows, all within the call's total bound.
func (c *Client) do(ctx context.Context, req connect.AnyRequest, next connect.UnaryFunc) (connect.AnyResponse, error) {
	proc := req.Spec().Procedure
	idempotent := PolicyOf(proc) == RetryAlways
	wait := longPollWait(req.Any())
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.callTimeout+wait)
	defer cancel()
	bo := NewBackoff(c.opts.minBackoff, c.opts.maxBackoff)
	tried := map[string]bool{}
	redirectTo := ""
	hops, attempts := 0, 0
	var last error
	for {
		target := redirectTo
		redirectTo = ""
		if target == "" {
			target = c.pick(tried)
		}
		if target == "" {
			// Every master has been tried in this round: pause, then
			// start another.
			if len(c.Masters()) == 0 {
				return nil, connect.NewError(connect.CodeUnavailable, ErrNoMasters)
			}
			clear(tried)
			if !Sleep(ctx, bo.Next()) {
				return nil, c.giveUp(ctx, last, attempts, start)
			}
			if target = c.pick(tried); target == "" {
				target = c.pickAny()
			}
		}
		tried[target] = true
		attempts++

		var tr sendTrace
		attemptStart := time.Now()
		actx, acancel := context.WithTimeout(ctx, c.opts.attemptTimeout+wait)
		resp, err := next(tr.with(context.WithValue(actx, targetKey{}, target)), req)
		expired := actx.Err() != nil
		acancel()
		if err == nil {
			c.answered(target, resp.Header().Get(LeaderHeader))
			c.learn(resp.Any())
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, c.giveUp(ctx, err, attempts, start)
		}
		last = err
		o, silent := classify(err, expired, &tr)
		switch {
		case silent && (expired || connect.CodeOf(err) == connect.CodeDeadlineExceeded) && c.answeredSince(target, attemptStart):
			// Slow, not down: the master answered other calls of this
			// client while this one waited (a leader under load, whose
			// commits queue). Passing it over would send every call of
			// the client to followers that redirect back to it, not
			// followed while it is passed over: at 10,000 simulated
			// agents, 100 agents per client reported nothing for 10 s
			// after one status call outlived its attempt (issue 13). A
			// master's DeadlineExceeded is the same outlived attempt
			// (the call carries the attempt's deadline), seen from the
			// master's clock, which may run out first.
			// Only this call moves on.
		case silent:
			// A master that gave up on the call itself took its time too.
			c.skipFailed(target, err, expired || connect.IsWireError(err))
		}
		switch o {
		case final:
			return nil, err
		case redirected:
			_, addr, _ := LeaderFromError(err)
			addr = c.norm(addr)
			c.AddMasters(addr)
			if addr == "" || addr == target || c.isDown(addr) {
				break // no progress: treat as "no leader known"
			}
			if hops >= c.opts.maxRedirects {
				return nil, fmt.Errorf("client: %s: followed %d redirects without reaching the leader: %w", proc, hops, err)
			}
			hops++
			redirectTo = addr
		case unknown:
			if !idempotent {
				return nil, outcomeUnknown(err, target)
			}
		}
		c.opts.log.Debug("retrying call", "procedure", proc, "master", target, "attempt", attempts, "err", err)
	}
}

// giveUp is the error of a call whose total bound (or context) ended.
func (c *Client) giveUp(ctx context.Context, last error, attempts int, start time.Time) error {
	if last == nil {
		last = ctx.Err()
	}
	code := connect.CodeOf(last)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	} else if errors.Is(ctx.Err(), context.Canceled) {
		code = connect.CodeCanceled
	}
	return wrap(code, last, fmt.Errorf("client: gave up after %d attempts in %s: %w", attempts, time.Since(start).Round(time.Millisecond), last))
}

// outcomeUnknown is the error of a write not retried after it may have been
// applied.
func outcomeUnknown(err error, target string) error {
	code := connect.CodeOf(err)
	if code != connect.CodeUnavailable {
		code = connect.CodeDeadlineExceeded
	}
	return wrap(code, err, fmt.Errorf("%w: no answer from %s: %w", ErrOutcomeUnknown, target, err))
}

// wrap returns a Connect error with code and msg that keeps the details and
// metadata of from (so LeaderFromError still works on it).
func wrap(code connect.Code, from, msg error) *connect.Error {
	out := connect.NewError(code, msg)
	var ce *connect.Error
	if errors.As(from, &ce) {
		for _, d := range ce.Details() {
			out.AddDetail(d)
		}
		for k, vs := range ce.Meta() {
			for _, v := range vs {
				out.Meta().Add(k, v)
			}
		}
	}
	return out
}
