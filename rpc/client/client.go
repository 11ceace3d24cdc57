package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// LeaderHeader is the response header a follower sets to the leader's URL.
const LeaderHeader = "Agora-Leader"

// maxHops bounds how many redirects one call follows.
const maxHops = 3

// Client holds redirect-following clients for agora's services.
type Client struct {
	Operator  agorav1connect.OperatorServiceClient
	Scheduler agorav1connect.SchedulerServiceClient
	Agent     agorav1connect.AgentServiceClient

	origin string
	mu     sync.Mutex
	target *url.URL
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient *http.Client
	grpc       bool
	connect    []connect.ClientOption
}

// WithHTTPClient uses hc's transport (its timeout and other settings
// apply too). The default is an HTTP/2 cleartext client.
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

// DefaultHTTPClient returns an HTTP client speaking HTTP/2 over cleartext
// TCP (prior knowledge), as agora masters accept, so gRPC and streams work.
func DefaultHTTPClient() *http.Client {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}

// New returns a Client for a master at addr ("http://host:port" or
// "host:port").
func New(addr string, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.httpClient
	if hc == nil {
		hc = DefaultHTTPClient()
	}
	c := &Client{target: parseTarget(addr)}
	c.origin = c.target.String()
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	rewriting := *hc
	rewriting.Transport = &rewriteTransport{c: c, next: rt}

	copts := []connect.ClientOption{connect.WithInterceptors(redirectInterceptor{c: c}), connect.WithCompressMinBytes(4 << 10)}
	if o.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	copts = append(copts, o.connect...)
	base := c.Target()
	c.Operator = agorav1connect.NewOperatorServiceClient(&rewriting, base, copts...)
	c.Scheduler = agorav1connect.NewSchedulerServiceClient(&rewriting, base, copts...)
	c.Agent = agorav1connect.NewAgentServiceClient(&rewriting, base, copts...)
	return c
}

func parseTarget(addr string) *url.URL {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(strings.TrimRight(addr, "/"))
	if err != nil || u.Host == "" {
		return &url.URL{Scheme: "http", Host: strings.TrimPrefix(addr, "http://")}
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}
}

// Target returns the base URL calls currently go to.
func (c *Client) Target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target.String()
}

// SetTarget points later calls at addr.
func (c *Client) SetTarget(addr string) {
	u := parseTarget(addr)
	c.mu.Lock()
	c.target = u
	c.mu.Unlock()
}

func (c *Client) current() *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.target
}

// rewriteTransport sends every request to the client's current target.
type rewriteTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tgt := t.c.current()
	if req.URL.Scheme != tgt.Scheme || req.URL.Host != tgt.Host {
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host, req.Host = tgt.Scheme, tgt.Host, ""
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil && req.Context().Err() == nil {
		return nil, &unreachableError{target: tgt.String(), err: err}
	}
	return resp, err
}

// unreachableError marks a call that never got an answer from its target.
type unreachableError struct {
	target string
	err    error
}

func (e *unreachableError) Error() string { return e.target + ": " + e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// LeaderFromError extracts the leader a follower redirected us to, from
// the LeaderRedirect detail or else the Agora-Leader header.
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
	if h := ce.Meta().Get(LeaderHeader); h != "" {
		return "", h, true
	}
	return "", "", false
}

// redirectInterceptor retries unary calls at the leader a follower names,
// and at the original address when a leader we were sent to is gone.
type redirectInterceptor struct{ c *Client }

func (r redirectInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		for hop := 0; hop < maxHops && err != nil; hop++ {
			if ctx.Err() != nil {
				break
			}
			_, addr, ok := LeaderFromError(err)
			if !ok {
				// A leader we were sent to may have died: start over from
				// the address we were given. Only calls that got no answer
				// at all are retried; as with any retry after a lost answer,
				// a write that did reach the dead leader may apply twice.
				var unreachable *unreachableError
				if !errors.As(err, &unreachable) || r.c.Target() == r.c.origin {
					break
				}
				addr = r.c.origin
			}
			if parseTarget(addr).String() == r.c.Target() {
				break // redirected to where we already are: no progress
			}
			r.c.SetTarget(addr)
			resp, err = next(ctx, req)
		}
		return resp, err
	}
}

func (r redirectInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (r redirectInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
