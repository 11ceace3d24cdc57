package master

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/agora-sched/agora/auth"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Default limits (Limits documents each).
const (
	DefaultMaxRequestBytes           = 4 << 20
	DefaultMaxOperationsPerAccept    = 256
	DefaultMaxLaunchesPerAccept      = 1024
	DefaultMaxTasksPerFramework      = 100_000
	DefaultMaxFrameworksPerPrincipal = 1000
	DefaultSubscribeRate             = 20
	DefaultSubscribeBurst            = 50
	DefaultCallRate                  = 1000
	DefaultCallBurst                 = 2000
)

// anonymousPrincipal is who a call is charged to when nothing names a
// principal.
const anonymousPrincipal = "anonymous"

// Limits bound what one client may ask of the masters. A zero field takes
// its default; a negative one means no limit. Size and count limits that
// depend on replicated state are stamped by the leader into the command
// it proposes (as it stamps times), so every replica judges a command with
// the same values; a leader with other flags applies its own from then on.
// Rates are per master process and judged on the leader only.
type Limits struct {
	// MaxRequestBytes bounds one request message (after decompression) on
	// every service; default 4 MiB. Connect answers ResourceExhausted.
	MaxRequestBytes int
	// MaxOperationsPerAccept bounds the operations of one Accept;
	// default 256.
	MaxOperationsPerAccept int
	// MaxLaunchesPerAccept bounds the tasks one Accept launches (LAUNCH
	// and LAUNCH_GROUP together); default 1024.
	MaxLaunchesPerAccept int
	// MaxTasksPerFramework bounds a framework's non-terminal tasks;
	// default 100000. An Accept that would pass it launches nothing.
	MaxTasksPerFramework int
	// MaxFrameworksPerPrincipal bounds the frameworks (not torn down)
	// registered under one principal; default 1000. Re-subscribing a
	// registered framework does not count.
	MaxFrameworksPerPrincipal int
	// SubscribeRate is the sustained rate of Subscribe calls per principal
	// per second, with bursts of SubscribeBurst; defaults 20 and 50.
	SubscribeRate  float64
	SubscribeBurst int
	// CallRate is the sustained rate of the other SchedulerService calls
	// per principal per second, with bursts of CallBurst; defaults 1000
	// and 2000.
	CallRate  float64
	CallBurst int
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxRequestBytes, DefaultMaxRequestBytes)
	def(&l.MaxOperationsPerAccept, DefaultMaxOperationsPerAccept)
	def(&l.MaxLaunchesPerAccept, DefaultMaxLaunchesPerAccept)
	def(&l.MaxTasksPerFramework, DefaultMaxTasksPerFramework)
	def(&l.MaxFrameworksPerPrincipal, DefaultMaxFrameworksPerPrincipal)
	def(&l.SubscribeBurst, DefaultSubscribeBurst)
	def(&l.CallBurst, DefaultCallBurst)
	if l.SubscribeRate == 0 {
		l.SubscribeRate = DefaultSubscribeRate
	}
	if l.CallRate == 0 {
		l.CallRate = DefaultCallRate
	}
}

// readMaxBytes is MaxRequestBytes for connect.WithReadMaxBytes (0: none).
func (l Limits) readMaxBytes() int { return max(l.MaxRequestBytes, 0) }

// stamp converts a limit to a command's field (0: none).
func stamp(v int) uint32 {
	if v <= 0 {
		return 0
	}
	return uint32(min(v, int(^uint32(0))))
}

// acceptLimits are the limits the leader stamps into an AcceptCommand.
func (l Limits) acceptLimits() *agorav1.AcceptLimits {
	return &agorav1.AcceptLimits{
		MaxOperations:     stamp(l.MaxOperationsPerAccept),
		MaxLaunches:       stamp(l.MaxLaunchesPerAccept),
		MaxFrameworkTasks: stamp(l.MaxTasksPerFramework),
	}
}

// maxResourcesPerItem bounds the resources of one task, one operation and
// one demand, and maxVolumesPerOperation the volumes of one operation:
// shapes of a message, judged at the edge like its size.
const (
	maxResourcesPerItem    = 256
	maxVolumesPerOperation = 256
	// maxLabels bounds the labels of a RESERVE (kept in the replicated
	// reservation), maxLabelBytes a label's key and its value.
	maxLabels     = 64
	maxLabelBytes = 1024
	// maxRolesPerFramework bounds the roles of one framework: each is
	// walked by every allocation round.
	maxRolesPerFramework = 128
)

// checkInfoShape refuses a FrameworkInfo with more roles than
// maxRolesPerFramework (InvalidArgument); the FSM judges the rest.
func checkInfoShape(info *agorav1.FrameworkInfo) error {
	if n := len(info.GetRoles()); n > maxRolesPerFramework {
		return invalid("framework_info lists %d roles, at most %d allowed", n, maxRolesPerFramework)
	}
	return nil
}

// checkAcceptShape refuses operations with more resources or volumes than
// any real accept needs (InvalidArgument).
func checkAcceptShape(ops []*agorav1.Operation) error {
	for i, op := range ops {
		if n := len(op.GetResources()); n > maxResourcesPerItem {
			return invalid("operation %d: %d resources, at most %d allowed", i, n, maxResourcesPerItem)
		}
		if n := len(op.GetVolumes()); n > maxVolumesPerOperation {
			return invalid("operation %d: %d volumes, at most %d allowed", i, n, maxVolumesPerOperation)
		}
		if n := len(op.GetLabels()); n > maxLabels {
			return invalid("operation %d: %d labels, at most %d allowed", i, n, maxLabels)
		}
		for k, v := range op.GetLabels() {
			if len(k) > maxLabelBytes || len(v) > maxLabelBytes {
				return invalid("operation %d: a label's key or value is longer than %d bytes", i, maxLabelBytes)
			}
		}
		for _, t := range op.GetTasks() {
			if n := len(t.GetResources()); n > maxResourcesPerItem {
				return invalid("operation %d: a task has %d resources, at most %d allowed", i, n, maxResourcesPerItem)
			}
		}
	}
	return nil
}

// principalOf names who a call is charged to: the authenticated principal
// (auth.PrincipalFrom) when authentication is on, else the principal the
// framework declares, or "anonymous".
func principalOf(ctx context.Context, declared string) string {
	if p, ok := auth.PrincipalFrom(ctx); ok {
		return p
	}
	if declared != "" {
		return declared
	}
	return anonymousPrincipal
}

// maxLimiterKeys bounds the principals a rateLimiter tracks: past it,
// principals whose bucket is full (idle ones) are forgotten.
const maxLimiterKeys = 10_000

// rateLimiter is a token bucket per principal (golang.org/x/time/rate),
// judged against the time it is given (the master's clock).
type rateLimiter struct {
	what  string // "Subscribe calls", for the refusal
	limit rate.Limit
	burst int

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

// newRateLimiter returns a limiter of perSec with burst; nil (no limit)
// when perSec is negative.
func newRateLimiter(what string, perSec float64, burst int) *rateLimiter {
	if perSec < 0 {
		return nil
	}
	return &rateLimiter{what: what, limit: rate.Limit(perSec), burst: max(burst, 1), keys: map[string]*rate.Limiter{}}
}

// charge charges one call of ctx's caller at now: the authenticated
// principal, else the declared one (principalOf). A master's own clients
// (the service scheduler, InternalPrincipal) are not rate limited.
func (r *rateLimiter) charge(ctx context.Context, declared string, now time.Time) error {
	if id, ok := auth.IdentityFrom(ctx); ok && internal(id) {
		return nil
	}
	return r.allow(principalOf(ctx, declared), now)
}

// allow charges one call to principal at now, or answers ResourceExhausted
// naming the limit.
func (r *rateLimiter) allow(principal string, now time.Time) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	l, ok := r.keys[principal]
	if !ok {
		if len(r.keys) >= maxLimiterKeys {
			r.forgetIdle(now)
		}
		l = rate.NewLimiter(r.limit, r.burst)
		r.keys[principal] = l
	}
	ok = l.AllowN(now, 1)
	r.mu.Unlock()
	if ok {
		return nil
	}
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"rate limit exceeded: principal %q made more than %g %s per second (burst %d); slow down and retry",
		principal, float64(r.limit), r.what, r.burst))
}

// forgetIdle drops principals whose bucket has refilled (they would start
// afresh anyway); if none has, it drops them all rather than grow.
func (r *rateLimiter) forgetIdle(now time.Time) {
	for k, l := range r.keys {
		if l.TokensAt(now) >= float64(r.burst) {
			delete(r.keys, k)
		}
	}
	if len(r.keys) >= maxLimiterKeys {
		clear(r.keys)
	}
}
