package master

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"sync"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// maxStreamQueue bounds the events waiting for one framework stream. A stream
// that falls this far behind is closed; the framework resubscribes and gets a
// fresh view from state (outstanding offers, unacknowledged updates). A
// queued event costs about 100 bytes (events share the state's statuses and
// offers), so the bound holds a stream's queue near 10 MB. It was 10,000:
// a framework launching 250,000 tasks that fell a few seconds behind on a
// busy machine overflowed 25 times in one 1M-task run, and each overflow
// cost more than it saved (its offers rescinded, Accepts in flight refused,
// every task reconciled again on resubscription; issue 13).
const maxStreamQueue = 100_000

// deliverAlways is the index of events that are not part of the replicated
// log (reconciliation answers): they pass every stream's snapshot filter.
const deliverAlways = math.MaxUint64

// queued is one event waiting for a stream, tagged with the Raft index that
// produced it so that a stream can skip what its initial snapshot covered.
type queued struct {
	index uint64
	ev    *agorav1.SubscribeResponse
	// batch, when set instead of ev, are events sent one after the other
	// in this place of the queue (a reconciliation's answers): they weigh
	// little against maxStreamQueue (batchWeight), so a framework with more
	// tasks than that still gets its answers instead of an overflow.
	batch []*agorav1.SubscribeResponse
}

// batchEventsPerWeight is how many events of a batch weigh as much as one
// queued event against maxStreamQueue.
const batchEventsPerWeight = 1000

// weight is what the item counts against maxStreamQueue.
func (q queued) weight() int {
	if q.batch == nil {
		return 1
	}
	return 1 + len(q.batch)/batchEventsPerWeight
}

// events are the events of the item, in order.
func (q queued) events() []*agorav1.SubscribeResponse {
	if q.batch != nil {
		return q.batch
	}
	return []*agorav1.SubscribeResponse{q.ev}
}

// streamEnd says why a stream was closed.
type streamEnd struct {
	// final, when set, is sent to the framework (an ERROR event) after the
	// queued events are flushed.
	final *agorav1.SubscribeResponse
	// err is what the handler returns (nil ends the stream cleanly).
	err error
	// leaderLost: the handler answers with the new leader's address.
	leaderLost bool
	// flush: deliver what is still queued before ending.
	flush bool
}

// stream is one live (or pending) Subscribe call of a framework. secret is
// the credential only its subscriber learns (in SUBSCRIBED); token, the
// digest of secret, is the stream's identity in the replicated state, in
// commands and in logs. No API returns either: a client that reads
// everything the operator API shows still cannot act for the framework.
type stream struct {
	fid, token, secret string
	// batched: the subscriber takes UPDATES events (eventSender).
	batched bool

	mu     sync.Mutex
	queue  []queued
	weight int // of queue
	end    *streamEnd
	notify chan struct{} // capacity 1: something was queued or the stream ended
}

// newStream returns a pending stream of fid with a fresh secret.
func newStream(fid string) *stream {
	secret := NewID()
	return &stream{fid: fid, token: streamDigest(secret), secret: secret, notify: make(chan struct{}, 1)}
}

// streamDigest is the identity a stream secret is known by in the state:
// its SHA-256 in hex.
func streamDigest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func (st *stream) wake() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

// push queues events; it never blocks. Overflow closes the stream.
func (st *stream) push(items ...queued) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.end != nil {
		return
	}
	w := st.weight
	for _, it := range items {
		w += it.weight()
	}
	if w > maxStreamQueue {
		st.queue, st.weight = nil, 0
		st.end = &streamEnd{err: connect.NewError(connect.CodeUnavailable,
			errStreamOverflow)}
		st.wake()
		return
	}
	st.queue, st.weight = append(st.queue, items...), w
	st.wake()
}

// close ends the stream with e unless it already ended; it reports whether
// this call ended it.
func (st *stream) close(e *streamEnd) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.end != nil {
		return false
	}
	st.end = e
	if !e.flush {
		st.queue, st.weight = nil, 0
	}
	st.wake()
	return true
}

// take returns the queued events and the end reason, if any.
func (st *stream) take() ([]queued, *streamEnd) {
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queue
	st.queue, st.weight = nil, 0
	return q, st.end
}

// broker fans FSM events out to framework streams. OnApply feeds it on every
// replica; only the leader has streams. It never blocks the FSM.
type broker struct {
	mu sync.Mutex
	// streams maps a framework id to its streams: the current one and any
	// pending subscription that has not committed yet.
	streams map[string]map[*stream]struct{}
	// current maps a framework id to the stream that won the latest
	// subscription.
	current map[string]*stream
}

func newBroker() *broker {
	return &broker{streams: map[string]map[*stream]struct{}{}, current: map[string]*stream{}}
}

// add registers a pending stream: it receives events from now on.
func (b *broker) add(st *stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	set := b.streams[st.fid]
	if set == nil {
		set = map[*stream]struct{}{}
		b.streams[st.fid] = set
	}
	set[st] = struct{}{}
}

// remove forgets a stream (it ended).
func (b *broker) remove(st *stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if set := b.streams[st.fid]; set != nil {
		delete(set, st)
		if len(set) == 0 {
			delete(b.streams, st.fid)
		}
	}
	if b.current[st.fid] == st {
		delete(b.current, st.fid)
	}
}

// promote makes st the framework's current stream once its subscription
// committed; every other stream of the framework is told it was replaced.
// currentToken is the framework's token in state: when it is not st's, a
// later subscription already won and st itself is the replaced one.
func (b *broker) promote(st *stream, currentToken string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if currentToken != st.token {
		st.close(replacedEnd())
		return false
	}
	for other := range b.streams[st.fid] {
		if other != st {
			other.close(replacedEnd())
		}
	}
	b.current[st.fid] = st
	return true
}

func replacedEnd() *streamEnd {
	return &streamEnd{final: errorEvent("replaced by a new subscription")}
}

// isCurrent reports whether st is its framework's current stream.
func (b *broker) isCurrent(st *stream) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current[st.fid] == st
}

// has reports whether any stream (current or pending) exists for fid.
func (b *broker) has(fid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.streams[fid]) > 0
}

// sendCurrent queues events on the framework's current stream if its token
// is token.
func (b *broker) sendCurrent(fid, token string, items ...queued) {
	b.mu.Lock()
	st := b.current[fid]
	b.mu.Unlock()
	if st != nil && st.token == token {
		st.push(items...)
	}
}

// closeAll ends every stream with e (leadership lost, shutdown).
func (b *broker) closeAll(e func() *streamEnd) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, set := range b.streams {
		for st := range set {
			st.close(e())
		}
	}
}

// publish routes the events of one applied index to the streams.
func (b *broker) publish(index uint64, events []fsm.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.streams) == 0 {
		return
	}
	// A stream's events of one entry are pushed together, so that it takes
	// them in one wake-up (and batches their updates: eventSender).
	var pending map[*stream][]queued
	add := func(st *stream, q queued) {
		if pending == nil {
			pending = make(map[*stream][]queued)
		}
		pending[st] = append(pending[st], q)
	}
	for _, e := range events {
		ev, end := eventToResponse(e)
		targets := b.streams[e.FrameworkID]
		if e.FrameworkID == "" && e.Kind == fsm.EventAgentLost {
			for _, set := range b.streams {
				for st := range set {
					add(st, queued{index: index, ev: ev})
				}
			}
			continue
		}
		for st := range targets {
			if ev != nil {
				add(st, queued{index: index, ev: ev})
			}
			if end != nil {
				if items := pending[st]; len(items) > 0 {
					st.push(items...)
					delete(pending, st)
				}
				st.close(end)
			}
		}
	}
	for st, items := range pending {
		st.push(items...)
	}
}

// eventToResponse converts an FSM event into the stream event it causes, and
// the end of the stream it causes (teardown).
func eventToResponse(e fsm.Event) (*agorav1.SubscribeResponse, *streamEnd) {
	switch e.Kind {
	case fsm.EventOffersCreated:
		return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Offers{
			Offers: &agorav1.Offers{Offers: e.Offers}}}, nil
	case fsm.EventOfferRemoved:
		if !e.Rescind {
			return nil, nil
		}
		return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Rescind{
			Rescind: &agorav1.Rescind{OfferId: e.OfferID, Reason: e.Reason}}}, nil
	case fsm.EventTaskStatus:
		return updateEvent(e.Status), nil
	case fsm.EventAgentLost:
		return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Failure{
			Failure: &agorav1.Failure{AgentId: e.AgentID, Reason: e.Reason}}}, nil
	case fsm.EventInverseOffer:
		return inverseOffersEvent(e.InverseOffer), nil
	case fsm.EventFrameworkTornDown:
		msg := "framework torn down"
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
		return nil, &streamEnd{final: errorEvent(msg), flush: true}
	}
	return nil, nil
}

func inverseOffersEvent(ios ...*agorav1.InverseOffer) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_InverseOffers{
		InverseOffers: &agorav1.InverseOffers{InverseOffers: ios}}}
}

func updateEvent(s *agorav1.TaskStatus) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Update{
		Update: &agorav1.Update{Status: s}}}
}

func errorEvent(msg string) *agorav1.SubscribeResponse {
	return &agorav1.SubscribeResponse{Event: &agorav1.SubscribeResponse_Error{
		Error: &agorav1.Error{Message: msg}}}
}
