package client

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// LeaderHeader is the response header a follower sets to the leader's URL.
const LeaderHeader = "Agora-Leader"

// OutcomeHeader is set to "unknown" on an Unavailable answer from a master
// that had already proposed the write when it failed (leadership lost,
// raft shut down): the write may or may not have been applied.
const OutcomeHeader = "Agora-Outcome"

// UnreachableHeader is the request header with which a stream's opening
// names the masters the client is passing over (comma-separated URLs): a
// follower whose leader is one of them may hold the answer until an
// election names another, instead of redirecting the client to a leader it
// cannot reach.
const UnreachableHeader = "Agora-Unreachable"

// Defaults for the options left unset.
const (
	DefaultAttemptTimeout    = 5 * time.Second
	DefaultCallTimeout       = 30 * time.Second
	DefaultStreamOpenTimeout = 10 * time.Second
	DefaultMaxRedirects      = 5
	DefaultMinBackoff        = 50 * time.Millisecond
	DefaultMaxBackoff        = time.Second
)

// downFor is how long a master that did not answer in time (an attempt or
// a stream's opening timed out, a dial timed out) is passed over while
// others are left to try.
const downFor = 10 * time.Second

// failedFastFor is how long a master whose failure came at once (the
// connection was refused, or reset or closed under a call) is passed over.
// Trying it again costs little, while passing it over for long costs a
// lot: a master that was killed and restarts within seconds may be the
// next leader, and a redirect to a master being passed over is not
// followed.
const failedFastFor = time.Second

// Errors of this package.
var (
	// ErrOutcomeUnknown wraps the error of a write that reached a master
	// that then failed to answer (or lost leadership) and that is not
	// retried because retrying it is not safe: it may or may not have been
	// applied. Read the state to find out.
	ErrOutcomeUnknown = errors.New("client: the write may or may not have been applied")
	// ErrNoMasters: the client knows no master address.
	ErrNoMasters = errors.New("client: no master address known")
)

// Client holds agora's three service clients over one shared view of the
// masters: the addresses given and learned, the preferred one (the last
// that answered, normally the leader) and those that recently did not
// answer. Every unary call goes through the retry loop described in the
// package documentation; a Client is safe for concurrent use.
type Client struct {
	Operator  agorav1connect.OperatorServiceClient
	Scheduler agorav1connect.SchedulerServiceClient
	Agent     agorav1connect.AgentServiceClient

	opts options
	hc   *http.Client
	// parsed caches the parsed URLs of master addresses (parsedAddr).
	parsed sync.Map

	mu      sync.Mutex
	masters []string             // every known master, in the order learned
	target  string               // preferred master
	down    map[string]time.Time // masters that did not answer, until when
	// lastAnswer is when each master last answered a call of this client.
	lastAnswer map[string]time.Time
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient     *http.Client
	grpc           bool
	connect        []connect.ClientOption
	attemptTimeout time.Duration
	callTimeout    time.Duration
	streamOpen     time.Duration
	maxRedirects   int
	minBackoff     time.Duration
	maxBackoff     time.Duration
	log            *slog.Logger
	tls            *tls.Config
	writesInFlight int
}

// WithHTTPClient uses hc's transport (its timeout and other settings
// apply too). The default is DefaultHTTPClient().
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithGRPC uses the gRPC protocol instead of Connect's.
func WithGRPC() Option {
	return func(o *options) { o.grpc = true }
}

// WithClientOptions adds Connect client options (interceptors, limits).
func WithClientOptions(opts ...connect.ClientOption) Option {
	return func(o *options) { o.connect = append(o.connect, opts...) }
}

// WithAttemptTimeout bounds one attempt of a unary call at one master
// (default 5s); a master that does not answer within it is skipped. A
// long poll (a request with wait_seconds) gets its wait on top.
func WithAttemptTimeout(d time.Duration) Option {
	return func(o *options) { o.attemptTimeout = d }
}

// WithCallTimeout bounds a unary call, all attempts included (default
// 30s); a shorter deadline on the call's context wins. A long poll gets
// its wait on top. There is no way to turn the bound off.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.callTimeout = d }
}

// WithStreamOpenTimeout bounds the wait for a server stream's first
// message (default 10s). Afterwards the stream has no deadline; HTTP/2
// pings and the stream's own heartbeats tell whether it is alive.
func WithStreamOpenTimeout(d time.Duration) Option {
	return func(o *options) { o.streamOpen = d }
}

// WithMaxRedirects bounds how many redirects one call follows (default 5).
func WithMaxRedirects(n int) Option {
	return func(o *options) { o.maxRedirects = n }
}

// WithBackoff bounds the jittered, doubling pause between rounds of
// attempts once every known master was tried (defaults 50ms and 1s).
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithLogger receives a debug line for every retried attempt.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// DefaultHTTPClient returns an HTTP client speaking HTTP/2 over cleartext
// TCP (prior knowledge), as agora masters accept, so gRPC and streams work.
// A connection on which nothing arrives for 5s is pinged and closed when
// the ping is not answered within 5s: a stream or long poll to a paused or
// partitioned master fails instead of waiting forever. Calls made together
// to a master share one connection (h2.go).
func DefaultHTTPClient() *http.Client { return &http.Client{Transport: h2Transport(nil)} }

// New returns a Client for the masters at addrs: one address or a
// comma-separated list ("http://host:port" or "host:port"); "" starts
// with none (add them with AddMasters).
func New(addrs string, opts ...Option) *Client {
	o := options{
		attemptTimeout: DefaultAttemptTimeout,
		callTimeout:    DefaultCallTimeout,
		streamOpen:     DefaultStreamOpenTimeout,
		maxRedirects:   DefaultMaxRedirects,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.attemptTimeout <= 0 {
		o.attemptTimeout = DefaultAttemptTimeout
	}
	if o.callTimeout <= 0 {
		o.callTimeout = DefaultCallTimeout
	}
	if o.streamOpen <= 0 {
		o.streamOpen = DefaultStreamOpenTimeout
	}
	if o.maxRedirects < 0 {
		o.maxRedirects = 0
	}
	if o.minBackoff <= 0 {
		o.minBackoff = DefaultMinBackoff
	}
	if o.maxBackoff < o.minBackoff {
		o.maxBackoff = o.minBackoff
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: o, down: map[string]time.Time{}, lastAnswer: map[string]time.Time{}}
	c.AddMasters(strings.Split(addrs, ",")...)

	hc := o.httpClient
	if hc == nil {
		hc = newHTTPClient(o.tls)
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	rewriting := *hc
	rewriting.Transport = &rewriteTransport{c: c, next: rt}
	c.hc = &rewriting

	copts := []connect.ClientOption{connect.WithInterceptors(interceptor{c: c}), connect.WithCompressMinBytes(4 << 10)}
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	copts = append(copts, o.connect...)
	// The base URL is a placeholder: rewriteTransport sends each request to
	// the master its attempt chose.
	const base = "http://agora-master"
	c.Operator = newCarryingOperator(agorav1connect.NewOperatorServiceClient(&rewriting, base, copts...), o.writesInFlight)
	c.Scheduler = agorav1connect.NewSchedulerServiceClient(&rewriting, base, copts...)
	c.Agent = agorav1connect.NewAgentServiceClient(&rewriting, base, copts...)
	return c
}

// CloseIdleConnections closes the idle connections of the client's HTTP
// transport.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// NormalizeAddr turns "host:port" into "http://host:port" and drops any
// path and trailing slash; it returns "" for an empty or unparsable
// address.
func NormalizeAddr(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return ""
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String()
}

// AddMasters adds master addresses to those the client knows. The first
// master ever known becomes the preferred one.
func (c *Client) AddMasters(addrs ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		c.learnLocked(c.norm(a))
	}
}

func (c *Client) learnLocked(addr string) {
	if addr == "" || slices.Contains(c.masters, addr) {
		return
	}
	c.masters = append(c.masters, addr)
	if c.target == "" {
		c.target = addr
	}
}

// Masters returns the master addresses the client knows, given and
// learned.
func (c *Client) Masters() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.masters)
}

// Target returns the preferred master: the last that answered a call, or
// the leader a follower named, where the next call and stream go first.
func (c *Client) Target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target
}

// SetTarget makes addr the preferred master (and a known one).
func (c *Client) SetTarget(addr string) {
	addr = c.norm(addr)
	if addr == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.learnLocked(addr)
	c.target = addr
	delete(c.down, addr)
}

// Skip records that addr did not answer (or answered from a stale state):
// calls pass it over for a while, and if it was the preferred master the
// preference moves to the next known one.
func (c *Client) Skip(addr string) { c.skipFor(addr, downFor) }

// skipFailed passes over addr after err, an attempt's failure to get an
// answer from it: for downFor when finding out took a timeout (waited, or
// err is one), else briefly.
func (c *Client) skipFailed(addr string, err error, waited bool) {
	d := failedFastFor
	var ne net.Error
	if waited || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		d = downFor
	}
	c.skipFor(addr, d)
}

func (c *Client) skipFor(addr string, d time.Duration) {
	addr = c.norm(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if addr == "" {
		return
	}
	now := time.Now()
	c.down[addr] = now.Add(d)
	if c.target == addr {
		c.moveOnLocked(addr, now)
	}
}

// Pass records that addr answered but cannot serve (a follower that knows
// no leader, or names one being passed over): if it is the preferred
// master, the preference moves to the next known one. Unlike Skip, addr is
// not passed over: it is asked again as soon as its turn comes, since it
// may know the new leader by then.
func (c *Client) Pass(addr string) {
	addr = c.norm(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if addr != "" && c.target == addr {
		c.moveOnLocked(addr, time.Now())
	}
}

// moveOnLocked makes the preferred master the next known one after from
// that is not being passed over; when every other is, the one whose pass-
// over ends first (never staying on from while there is another: a stream
// opened to the preferred master would go back to the one that just
// failed).
func (c *Client) moveOnLocked(from string, now time.Time) {
	i := slices.Index(c.masters, from)
	best := ""
	for k := 1; k < len(c.masters); k++ {
		m := c.masters[(i+k)%len(c.masters)]
		if m == from {
			continue
		}
		if !c.down[m].After(now) {
			c.target = m
			return
		}
		if best == "" || c.down[m].Before(c.down[best]) {
			best = m
		}
	}
	if best != "" {
		c.target = best
	}
}

// Follow makes the leader named by a follower's redirect error the
// preferred master, unless it is the one that answered or is being passed
// over because it did not answer. It reports whether err named such a
// leader; server streams are not retried by the client, so their callers
// use Follow (or just reopen the stream, which goes to Target).
func (c *Client) Follow(from string, err error) bool {
	_, addr, ok := LeaderFromError(err)
	addr = c.norm(addr)
	if !ok || addr == "" || addr == c.norm(from) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.learnLocked(addr)
	if c.down[addr].After(time.Now()) {
		return false
	}
	c.target = addr
	return true
}

// answered records that addr answered a call.
func (c *Client) answered(addr, leader string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.down, addr)
	c.lastAnswer[addr] = time.Now()
	c.target = addr
	// A follower that served a read names the leader: the next calls
	// (writes among them) go there, not to the follower to be redirected.
	if leader = c.norm(strings.TrimSpace(leader)); leader != "" && leader != addr && !c.down[leader].After(time.Now()) {
		c.learnLocked(leader)
		c.target = leader
	}
}

// answeredSince reports whether addr answered a call of this client after
// t: it is up, if slow to answer some calls.
func (c *Client) answeredSince(addr string, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastAnswer[addr].After(t)
}

// passedOver returns the masters being passed over, comma-separated ("" for
// none).
func (c *Client) passedOver() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var out []string
	for _, m := range c.masters {
		if c.down[m].After(now) {
			out = append(out, m)
		}
	}
	return strings.Join(out, ",")
}

// isDown reports whether addr is being passed over.
func (c *Client) isDown(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down[addr].After(time.Now())
}

// pick returns the first master, preferred one first, that this call has
// not tried in the current round and that is not being passed over. When
// there is none it returns "".
func (c *Client) pick(tried map[string]bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	ok := func(m string) bool { return m != "" && !tried[m] && !c.down[m].After(now) }
	if ok(c.target) {
		return c.target
	}
	for _, m := range c.masters {
		if ok(m) {
			return m
		}
	}
	return ""
}

// pickAny returns the master whose pass-over ends first, for a new round in
// which every master is passed over: they are all tried again.
func (c *Client) pickAny() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	best := ""
	for _, m := range c.masters {
		if best == "" || c.down[m].Before(c.down[best]) {
			best = m
		}
	}
	return best
}

// learn adds the masters a status or peer listing names.
func (c *Client) learn(msg any) {
	var ms []*agorav1.Master
	switch m := msg.(type) {
	case *agorav1.GetStatusResponse:
		ms = m.GetMasters()
	case *agorav1.ListPeersResponse:
		ms = m.GetPeers()
	default:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range ms {
		c.learnLocked(c.norm(m.GetHttpAddress()))
	}
}

// LeaderFromError extracts the leader a follower redirected us to, from
// the LeaderRedirect detail or else the Agora-Leader header. ok is false
// when err is not such a redirect.
func LeaderFromError(err error) (id, addr string, ok bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable {
		return "", "", false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if lr, isLR := v.(*agorav1.LeaderRedirect); isLR && lr.GetLeaderAddress() != "" {
			return lr.GetLeaderId(), lr.GetLeaderAddress(), true
		}
	}
	if h := strings.TrimSpace(ce.Meta().Get(LeaderHeader)); h != "" {
		return "", h, true
	}
	return "", "", false
}
