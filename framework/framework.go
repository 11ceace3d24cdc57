package framework

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/tlsconf"
)

// Defaults for Config fields left zero.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// missedHeartbeats is how many heartbeat intervals may pass without any event
// before the SDK considers the stream dead and resubscribes.
const missedHeartbeats = 5

// firstEventTimeout bounds the wait for SUBSCRIBED, before the heartbeat
// interval is known.
const firstEventTimeout = 30 * time.Second

// callAttempts is how many times a unary call is tried when it raced with
// a resubscription (its stream token was replaced). Leader changes are
// retried inside each attempt by rpc/client.
const callAttempts = 7

// maxRedirectHops is how many redirects in a row the subscription loop
// follows without a backoff.
const maxRedirectHops = 3

// Errors Run returns.
var (
	// ErrTornDown: the framework was torn down (by itself or an operator).
	ErrTornDown = errors.New("framework: torn down")
	// ErrStopped: a Driver call was made after Run returned, or was cut
	// short because Run's context ended.
	ErrStopped = errors.New("framework: run has ended")
	// ErrNoMasters: Config.Masters is empty.
	ErrNoMasters = errors.New("framework: no master addresses")
)

// Config configures Run.
type Config struct {
	// Masters are addresses of any masters ("http://127.0.0.1:7100" or
	// "127.0.0.1:7100"). The SDK follows redirects to the leader and tries
	// the others in turn when one does not answer.
	Masters []string

	// Info describes the framework. Leave Info.Id empty for a new
	// framework; set it to resubscribe as an existing one (a restarted
	// scheduler within the failover timeout). Run does not modify it.
	Info *agorav1.FrameworkInfo

	// DisableAutoAck turns off automatic acknowledgement. By default every
	// UPDATE that carries a uuid is acknowledged after Scheduler.Update
	// returns; with DisableAutoAck the Scheduler must call
	// Driver.Acknowledge itself, or the master keeps resending the update.
	DisableAutoAck bool

	// MinBackoff and MaxBackoff bound the exponential backoff between
	// resubscription attempts and between rounds of retried calls
	// (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration

	// HTTPClient carries all calls; nil uses client.DefaultHTTPClient()
	// (package rpc/client). Each call is bounded by rpc/client's attempt
	// and call timeouts as well as by its context.
	HTTPClient *http.Client

	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger

	// TLS, optional, names the CA, certificate and key for mutual TLS
	// with the masters (a client certificate from `agora tls cert --role
	// client`); the zero value means plaintext. Ignored with HTTPClient.
	TLS tlsconf.Files

	// Token is the bearer token the framework authenticates with to masters
	// that run with an auth file; "" means $AGORA_TOKEN (none when unset).
	Token string

	// Cluster is the cluster name the masters' certificates must carry
	// with TLS (master.<Cluster>.agora); default "agora".
	Cluster string

	// Gzip lets masters compress large answers and events (batches of
	// updates, offers) for this framework: for a framework far from the
	// masters over a slow link. Off by default: gzip costs the leader CPU
	// for every such event, and a framework usually runs in the masters'
	// data center.
	Gzip bool
}

// Scheduler receives a framework's events. Run calls its methods from one
// goroutine, one at a time, in the order the master sent the events; a
// method may call the Driver, and the next event is delivered after it
// returns.
type Scheduler interface {
	// Subscribed is called after every successful (re)subscription;
	// resubscribed is true when the framework already had its id.
	Subscribed(d Driver, frameworkID string, resubscribed bool)
	// Offers delivers new offers. Answer each with Accept or Decline.
	Offers(d Driver, offers []*agorav1.Offer)
	// Rescind says an offer was withdrawn; accepting it would fail.
	Rescind(d Driver, offerID string)
	// Update delivers a task status. Updates with a uuid are acknowledged
	// after Update returns unless Config.DisableAutoAck is set: queued and
	// sent in batches (one Acknowledge call carries all that queued while
	// the last one was in flight) without holding back the next event; an
	// acknowledgement that is lost makes the masters resend the update.
	Update(d Driver, status *agorav1.TaskStatus)
	// Failure says an agent was lost.
	Failure(d Driver, agentID string)
	// Error reports an error that ends the subscription; Run then returns.
	Error(d Driver, message string)
}

// InverseOfferScheduler is a Scheduler that also hears inverse offers: the
// cluster asks the framework to move its tasks off a draining agent by a
// deadline (InverseOffer.deadline; unset means none), after which the
// tasks still there are killed with reason DRAINED. Answer each with
// Driver.AcceptInverseOffer ("I will move") or Driver.DeclineInverseOffer;
// the answer is recorded for operators to see and changes nothing else:
// moving (launching elsewhere, then killing the tasks there) is the
// framework's own work. A Scheduler without this method gets inverse offers
// logged and unanswered. They are sent again after every (re)subscription
// while the agent drains and the framework has tasks on it.
type InverseOfferScheduler interface {
	Scheduler
	InverseOffers(d Driver, offers []*agorav1.InverseOffer)
}

// Driver makes calls to the master on behalf of the framework. Calls wait
// until the framework is subscribed, go to the current leader, and are
// retried across leader changes as package rpc/client allows. A Driver is safe for use from
// any goroutine, including from inside Scheduler methods.
type Driver interface {
	// FrameworkID is the framework's id, "" before the first SUBSCRIBED.
	FrameworkID() string
	// Accept applies ops, atomically, to the resources of offerIDs; the
	// unused rest is filtered for refuseSeconds (nil: master default).
	Accept(ctx context.Context, offerIDs []string, ops []*agorav1.Operation, refuseSeconds *float64) error
	// Decline returns offers; their agents are filtered for refuseSeconds.
	Decline(ctx context.Context, offerIDs []string, refuseSeconds *float64) error
	// Kill asks for a task to be killed.
	Kill(ctx context.Context, taskID, agentID string) error
	// Acknowledge acknowledges a status update (one with a uuid).
	Acknowledge(ctx context.Context, st *agorav1.TaskStatus) error
	// Reconcile asks for the latest states of tasks (all non-terminal tasks
	// when empty). The answers also arrive as Update events.
	Reconcile(ctx context.Context, tasks []*agorav1.ReconcileTask) ([]*agorav1.TaskStatus, error)
	// Revive removes filters and suppression for roles (all when none).
	Revive(ctx context.Context, roles ...string) error
	// Suppress stops offers for roles (all when none) until Revive; it
	// also clears those roles' demand.
	Suppress(ctx context.Context, roles ...string) error
	// Demand says what the framework cannot place with the offers it gets:
	// for each entry, count tasks of its shape (unreserved scalars) for
	// one of the framework's roles. Each call replaces the last (none
	// clears it); Suppress clears the suppressed roles'. Demand of a role
	// with a higher priority than roles holding revocable resources makes
	// the master rescind their offers and then preempt their revocable
	// tasks (see the README); the freed resources are offered to this
	// framework first for a short window. Call it again with what is
	// still unplaced once offers were used, or the demand keeps asking.
	// Bad shapes or counts are InvalidArgument; a role the framework does
	// not hold is PermissionDenied; a shape larger than any agent is
	// accepted and reported unsatisfiable by `agora explain`.
	Demand(ctx context.Context, demands ...*agorav1.Demand) error
	// Teardown ends the framework: its tasks are killed and Run returns
	// ErrTornDown.
	Teardown(ctx context.Context) error
	// PutRecord stores a record of the framework's own in the masters'
	// replicated state, compare-and-set: expectedVersion 0 creates the key
	// (FailedPrecondition if it exists), otherwise it must be the version
	// read. It returns the new version. At most 1 MiB a value.
	PutRecord(ctx context.Context, key string, value []byte, expectedVersion uint64) (uint64, error)
	// DeleteRecord removes one of the framework's records (expectedVersion
	// 0: whatever its version).
	DeleteRecord(ctx context.Context, key string, expectedVersion uint64) error
	// ListRecords lists the framework's records whose key starts with
	// prefix, sorted by key (a linearizable read).
	ListRecords(ctx context.Context, prefix string) ([]*agorav1.FrameworkRecord, error)
	// AcceptInverseOffer answers a draining agent's inverse offer: the
	// framework will move its tasks off the agent.
	AcceptInverseOffer(ctx context.Context, agentID string) error
	// DeclineInverseOffer answers a draining agent's inverse offer: the
	// framework will not move (its tasks are killed at the deadline).
	DeclineInverseOffer(ctx context.Context, agentID string) error
}

// Run subscribes the framework and delivers its events to s until ctx ends
// (it then returns nil; the framework stays registered until its failover
// timeout) or a fatal error: the framework was torn down (ErrTornDown), an
// ERROR event arrived, or the master refused the subscription
// (PermissionDenied, InvalidArgument, NotFound, ...).
func Run(ctx context.Context, cfg Config, s Scheduler) error {
	r, err := newRunner(cfg, s)
	if err != nil {
		return err
	}
	defer close(r.done)
	// A Driver call made from a Scheduler method (whatever ctx it was
	// given) ends when Run's ctx does, or a callback blocked on a cluster
	// that is gone would hold Run's return for as long as the call
	// retries. Only Run's ctx: when Run returns on its own (a teardown
	// ended the stream), a call in flight still gets its answer.
	r.stopping = ctx
	return r.run(ctx)
}

// runner is the state of one Run.
type runner struct {
	cfg   Config
	sched Scheduler
	log   *slog.Logger
	c     *client.Client // leader discovery, redirects and retries
	drv   *driver
	done  chan struct{} // closed when Run returns
	// stopping is Run's ctx (set before run starts).
	stopping context.Context
	acks     *ackQueue // automatic acknowledgements not sent yet

	mu        sync.Mutex
	info      *agorav1.FrameworkInfo
	token     string
	connected bool
	ready     chan struct{} // closed while connected
	tornDown  bool
	stopSess  context.CancelFunc // cancels the current session
	sess      context.Context    // done when the live session's master hangs
}

func newRunner(cfg Config, s Scheduler) (*runner, error) {
	if s == nil {
		return nil, errors.New("framework: nil scheduler")
	}
	if cfg.Info == nil {
		return nil, errors.New("framework: nil framework info")
	}
	var masters []string
	for _, m := range cfg.Masters {
		if a := client.NormalizeAddr(m); a != "" {
			masters = append(masters, a)
		}
	}
	if len(masters) == 0 {
		return nil, ErrNoMasters
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	r := &runner{
		cfg:      cfg,
		sched:    s,
		log:      cfg.Logger,
		done:     make(chan struct{}),
		stopping: context.Background(),
		info:     proto.Clone(cfg.Info).(*agorav1.FrameworkInfo),
		ready:    make(chan struct{}),
		acks:     newAckQueue(),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "framework")
	opts := []client.Option{client.WithBackoff(cfg.MinBackoff, cfg.MaxBackoff), client.WithLogger(r.log)}
	if cfg.HTTPClient != nil {
		opts = append(opts, client.WithHTTPClient(cfg.HTTPClient))
	}
	tlsOpts, err := cfg.tlsOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, tlsOpts...)
	token := cfg.Token
	if token == "" {
		token = client.TokenFromEnv()
	}
	opts = append(opts, client.WithToken(token))
	if !cfg.Gzip {
		opts = append(opts, client.WithClientOptions(connect.WithAcceptCompression("gzip", nil, nil)))
	}
	r.c = client.New(strings.Join(masters, ","), opts...)
	r.drv = &driver{r: r}
	return r, nil
}

func (r *runner) frameworkID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info.GetId()
}

// run is the subscribe/reconnect loop.
func (r *runner) run(ctx context.Context) error {
	bo := client.NewBackoff(r.cfg.MinBackoff, r.cfg.MaxBackoff)
	hops := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		target, subscribed, err := r.session(ctx)
		r.setDisconnected()
		if ctx.Err() != nil {
			return nil
		}
		if r.isTornDown() {
			return ErrTornDown
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if subscribed {
			bo.Reset()
		}
		// The client already made the leader a redirect names the target
		// of the next subscription.
		if next := r.c.Target(); next != target && hops < maxRedirectHops {
			if _, addr, ok := client.LeaderFromError(err); ok {
				hops++
				r.log.Info("following redirect to the leader", "from", target, "to", addr)
				continue
			}
		}
		hops = 0
		if !subscribed {
			// Try another master next. A master that answered (a
			// follower that knows no leader, or names one that did not
			// answer) is not passed over: it may know the new leader at
			// its next turn. One that did not answer the client already
			// passes over.
			r.c.Pass(target)
		}
		wait := bo.Next()
		r.log.Info("subscription ended; resubscribing", "master", target, "err", err, "backoff", wait)
		if !client.Sleep(ctx, wait) {
			return nil
		}
	}
}

// fatalError ends Run.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

// fatalCode reports whether a subscription refused with code must not be
// retried.
func fatalCode(c connect.Code) bool {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeFailedPrecondition, connect.CodeUnimplemented,
		connect.CodeAlreadyExists:
		return true
	}
	return false
}

// session subscribes once and dispatches events until the stream ends. It
// returns the master it talked to, whether SUBSCRIBED arrived, and why the
// stream ended (a *fatalError when Run must stop).
func (r *runner) session(ctx context.Context) (target string, subscribed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.stopSess = cancel
	info := proto.Clone(r.info).(*agorav1.FrameworkInfo)
	r.mu.Unlock()
	resubscribe := info.GetId() != ""

	target = r.c.Target()
	stream, err := r.c.Scheduler.Subscribe(sctx, connect.NewRequest(&agorav1.SubscribeRequest{FrameworkInfo: info, BatchedUpdates: true}))
	if err != nil {
		return target, false, r.classify(err)
	}
	defer stream.Close()

	// hung ends when the master stops answering (missed heartbeats); calls
	// in flight on this session then fail fast instead of holding a
	// Scheduler method, and with it the event loop (see runner.call).
	// Not derived from ctx: when Run ends, calls in flight keep their own
	// contexts.
	hung, markHung := context.WithCancel(context.Background())
	dog := newWatchdog(firstEventTimeout, func() { markHung(); cancel() })
	defer dog.stop()
	events := make(chan *agorav1.SubscribeResponse, 64)
	go func() {
		defer close(events)
		for stream.Receive() {
			dog.pause()
			select {
			case events <- stream.Msg():
			case <-sctx.Done():
				return
			}
			dog.resume()
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stops the reconciliation goroutine
	for ev := range events {
		if !subscribed {
			sub := ev.GetSubscribed()
			if sub == nil {
				return target, false, fmt.Errorf("framework: first event from %s is not SUBSCRIBED", target)
			}
			subscribed = true
			hb := time.Duration(sub.GetHeartbeatIntervalSeconds() * float64(time.Second))
			if hb <= 0 {
				hb = 15 * time.Second
			}
			dog.setTimeout(missedHeartbeats * hb)
			r.setConnected(hung, sub.GetFrameworkId(), sub.GetStreamToken())
			r.log.Info("subscribed", "framework_id", sub.GetFrameworkId(), "master", target,
				"master_id", sub.GetMasterId(), "resubscribed", resubscribe)
			r.sched.Subscribed(r.drv, sub.GetFrameworkId(), resubscribe)
			wg.Add(2)
			go func() {
				defer wg.Done()
				r.sendAcks(sctx)
			}()
			go func() {
				defer wg.Done()
				// Implicit reconciliation: the answers arrive as UPDATE events.
				if _, err := r.drv.Reconcile(sctx, nil); err != nil && sctx.Err() == nil {
					r.log.Warn("implicit reconciliation failed", "err", err)
				}
			}()
			continue
		}
		if ferr := r.dispatch(ctx, ev); ferr != nil {
			return target, true, ferr
		}
	}
	err = stream.Err()
	if dog.fired() && ctx.Err() == nil {
		r.c.Skip(target)
		err = fmt.Errorf("framework: no event from %s within %d heartbeat intervals", target, missedHeartbeats)
	}
	if err == nil {
		err = fmt.Errorf("framework: stream from %s ended", target)
	}
	if !subscribed {
		return target, false, r.classify(err)
	}
	if ctx.Err() == nil {
		if c := connect.CodeOf(err); fatalCode(c) {
			return target, true, &fatalError{fmt.Errorf("framework: subscription ended: %w", err)}
		}
	}
	return target, true, err
}

// classify marks subscription refusals that retrying cannot fix as fatal.
func (r *runner) classify(err error) error {
	if connect.CodeOf(err) == connect.CodeFailedPrecondition && strings.Contains(err.Error(), "torn down") {
		return &fatalError{fmt.Errorf("%w: subscribe: %w", ErrTornDown, err)}
	}
	if fatalCode(connect.CodeOf(err)) {
		return &fatalError{fmt.Errorf("framework: subscribe: %w", err)}
	}
	return err
}

// dispatch delivers one event to the Scheduler.
func (r *runner) dispatch(ctx context.Context, ev *agorav1.SubscribeResponse) error {
	switch e := ev.GetEvent().(type) {
	case *agorav1.SubscribeResponse_Offers:
		r.sched.Offers(r.drv, e.Offers.GetOffers())
	case *agorav1.SubscribeResponse_Rescind:
		r.sched.Rescind(r.drv, e.Rescind.GetOfferId())
	case *agorav1.SubscribeResponse_Update:
		r.update(e.Update.GetStatus())
	case *agorav1.SubscribeResponse_Updates:
		for _, st := range e.Updates.GetStatuses() {
			r.update(st)
		}
	case *agorav1.SubscribeResponse_Failure:
		r.sched.Failure(r.drv, e.Failure.GetAgentId())
	case *agorav1.SubscribeResponse_InverseOffers:
		ios := e.InverseOffers.GetInverseOffers()
		if is, ok := r.sched.(InverseOfferScheduler); ok {
			is.InverseOffers(r.drv, ios)
			break
		}
		for _, io := range ios {
			r.log.Warn("inverse offer not answered: the scheduler does not implement InverseOffers",
				"agent_id", io.GetAgentId(), "deadline", io.GetDeadline().AsTime())
		}
	case *agorav1.SubscribeResponse_Error:
		msg := e.Error.GetMessage()
		r.sched.Error(r.drv, msg)
		if strings.Contains(strings.ToLower(msg), "torn down") {
			return &fatalError{fmt.Errorf("%w: %s", ErrTornDown, msg)}
		}
		return &fatalError{fmt.Errorf("framework: error event: %s", msg)}
	case *agorav1.SubscribeResponse_Heartbeat:
	case *agorav1.SubscribeResponse_Subscribed:
		r.log.Warn("unexpected second SUBSCRIBED event")
	default:
		r.log.Warn("unknown event ignored")
	}
	return nil
}

// update delivers one status update to the Scheduler and queues its
// acknowledgement.
func (r *runner) update(st *agorav1.TaskStatus) {
	r.sched.Update(r.drv, st)
	if !r.cfg.DisableAutoAck && st.GetUuid() != "" {
		r.acks.add(st) // sent in batches by sendAcks, without holding back the next event
	}
}

func (r *runner) setConnected(sess context.Context, id, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sess = sess
	r.info.Id = id
	r.token = token
	if !r.connected {
		r.connected = true
		close(r.ready)
	}
}

func (r *runner) setDisconnected() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopSess = nil
	if r.connected {
		r.connected = false
		r.ready = make(chan struct{})
	}
}

func (r *runner) markTornDown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tornDown = true
	if r.stopSess != nil {
		r.stopSess()
	}
}

func (r *runner) isTornDown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tornDown
}

// watchdog cancels a stream when no event arrives within its timeout.
type watchdog struct {
	mu      sync.Mutex
	timeout time.Duration
	t       *time.Timer
	didFire bool
}

func newWatchdog(timeout time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{timeout: timeout}
	w.t = time.AfterFunc(timeout, func() {
		w.mu.Lock()
		w.didFire = true
		w.mu.Unlock()
		cancel()
	})
	return w
}

// pause stops the clock while an event waits for a slow Scheduler.
func (w *watchdog) pause() { w.t.Stop() }

// resume restarts the full timeout after an event.
func (w *watchdog) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Reset(w.timeout)
}

func (w *watchdog) setTimeout(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timeout = d
	w.t.Reset(d)
}

func (w *watchdog) stop() { w.t.Stop() }

func (w *watchdog) fired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.didFire
}
