package fsm

import (
	"fmt"
	"log/slog"
	"math"
	"slices"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Code classifies a Rejection; the RPC layer maps it to a Connect code.
type Code int

// Rejection codes, named after the Connect codes they map to.
const (
	CodeInvalidArgument Code = iota + 1
	CodeNotFound
	CodeFailedPrecondition
	CodePermissionDenied
	CodeAlreadyExists
	CodeResourceExhausted
)

// String is the lower-case Connect name of the code ("not_found").
func (c Code) String() string {
	switch c {
	case CodeInvalidArgument:
		return "invalid_argument"
	case CodeNotFound:
		return "not_found"
	case CodeFailedPrecondition:
		return "failed_precondition"
	case CodePermissionDenied:
		return "permission_denied"
	case CodeAlreadyExists:
		return "already_exists"
	case CodeResourceExhausted:
		return "resource_exhausted"
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Rejection is the verdict on a command that is invalid for the current
// state. Every replica reaches the same one; state is left unchanged.
type Rejection struct {
	Code    Code
	Message string // a clear lowercase sentence
}

// Error implements error.
func (r *Rejection) Error() string { return r.Message }

func reject(c Code, format string, args ...any) *Rejection {
	return &Rejection{Code: c, Message: fmt.Sprintf(format, args...)}
}

// Result is what Apply returns (as a value, in raft.ApplyFuture.Response()).
type Result struct {
	// Index is the Raft index of the entry.
	Index uint64
	// Err is nil when the command was applied.
	Err *Rejection
	// IDs lists ids the command created, e.g. the offers OffersCreated kept
	// after re-checking each one.
	IDs []string
	// Items holds the verdict on each item of a batch command (nil where
	// the item was applied); nil for other commands.
	Items []*Rejection
}

// DefaultRole is the role of a framework that names none, as in Mesos: it
// may be given weights and quota and is offered unreserved resources only;
// nothing can be reserved for it (resources.ValidReservationRole is false
// for it).
const DefaultRole = resources.DefaultRole

// validRole reports whether name may be a framework's role or a role's
// name: the default role or a reservation role name
// (^[a-z][a-z0-9_.-]{0,63}$); resources.ValidRoleName is the one rule.
func validRole(name string) bool { return resources.ValidRoleName(name) }

var quotaNames = map[string]bool{"cpus": true, "mem": true, "disk": true, "gpus": true}

// ValidateRole checks a role for SetRole, inside Apply (and, since it needs no
// state, at the RPC edge of followers too):
// name ^[a-z][a-z0-9_.-]{0,63}$ (or "*"), weight finite and >= 0 (0 means 1),
// 0 <= max_utilization <= 1, guarantee and limit scalars only, named from
// {cpus, mem, disk, gpus}, non-negative, each name at most once, and limit
// >= guarantee for every name in both.
func ValidateRole(r *agorav1.Role) *Rejection {
	if r == nil {
		return reject(CodeInvalidArgument, "role is missing")
	}
	if !validRole(r.GetName()) {
		return reject(CodeInvalidArgument, "invalid role name %q: want [a-z][a-z0-9_.-]{0,63} or \"*\"", r.GetName())
	}
	if w := r.GetWeight(); math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
		return reject(CodeInvalidArgument, "role %s: weight %g must be a finite number >= 0", r.GetName(), w)
	}
	if u := r.GetMaxUtilization(); math.IsNaN(u) || u < 0 || u > 1 {
		return reject(CodeInvalidArgument, "role %s: max utilization %g must be between 0 and 1", r.GetName(), u)
	}
	guarantee, rej := quotaScalars(r.GetName(), "guarantee", r.GetGuarantee())
	if rej != nil {
		return rej
	}
	limit, rej := quotaScalars(r.GetName(), "limit", r.GetLimit())
	if rej != nil {
		return rej
	}
	names := make([]string, 0, len(guarantee))
	for n := range guarantee {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if l, ok := limit[n]; ok && l < guarantee[n] {
			return reject(CodeInvalidArgument, "role %s: limit %s:%g is below guarantee %s:%g", r.GetName(), n, l, n, guarantee[n])
		}
	}
	return nil
}

func quotaScalars(role, what string, rs []*agorav1.Resource) (map[string]float64, *Rejection) {
	out := make(map[string]float64, len(rs))
	for _, q := range rs {
		n := q.GetName()
		switch {
		case !quotaNames[n]:
			return nil, reject(CodeInvalidArgument, "role %s: %s: unknown resource %q: want one of cpus, mem, disk, gpus", role, what, n)
		case len(q.GetRanges()) > 0 || len(q.GetSet()) > 0:
			return nil, reject(CodeInvalidArgument, "role %s: %s: %s must be a scalar", role, what, n)
		case q.GetRole() != "":
			return nil, reject(CodeInvalidArgument, "role %s: %s: %s must not carry a reservation role", role, what, n)
		case math.IsNaN(q.GetScalar()) || math.IsInf(q.GetScalar(), 0) || q.GetScalar() < 0 || q.GetScalar() > resources.MaxScalar:
			return nil, reject(CodeInvalidArgument, "role %s: %s: %s:%g must be a finite number >= 0", role, what, n, q.GetScalar())
		}
		if _, dup := out[n]; dup {
			return nil, reject(CodeInvalidArgument, "role %s: %s: %s given twice", role, what, n)
		}
		out[n] = q.GetScalar()
	}
	return out, nil
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventOffersCreated EventKind = iota + 1
	EventOfferRemoved
	EventTaskStatus
	EventAgentLost
	EventFrameworkTornDown
	// EventInverseOffer asks a framework to move off a draining agent.
	EventInverseOffer
)

// Event is something a framework stream must hear about; emitted by Apply on
// every replica (only the leader forwards it).
type Event struct {
	Kind        EventKind
	FrameworkID string
	// Offers of EventOffersCreated, grouped per framework.
	Offers []*agorav1.Offer
	// OfferID of EventOfferRemoved.
	OfferID string
	// Reason of EventOfferRemoved: "accepted", "declined", "rescinded: ...",
	// "expired"; for other kinds free text.
	Reason string
	// Rescind is true for EventOfferRemoved when the framework must be told
	// (RESCIND); false for accept and decline.
	Rescind bool
	// Status of EventTaskStatus.
	Status *agorav1.TaskStatus
	// AgentID of EventAgentLost and EventInverseOffer.
	AgentID string
	// InverseOffer of EventInverseOffer.
	InverseOffer *agorav1.InverseOffer
}

// Config configures an FSM.
type Config struct {
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
	// OnApply, when set, is called synchronously at the end of each Apply
	// that changed state, with the events it produced. It must not block and
	// must not modify the events.
	OnApply func(index uint64, events []Event)
}

// Usage is an agent's resource accounting.
type Usage struct {
	// Total is the agent's capacity.
	Total resources.Resources
	// Reserved maps role -> reserved resources (all roles; no "" key).
	Reserved resourcepb.Pools
	// Used maps pool -> used by non-terminal tasks and volumes.
	Used resourcepb.Pools
	// Offered maps pool -> in outstanding offers.
	Offered resourcepb.Pools
	// Free maps pool -> free to offer ("" = unreserved free; role = reserved free).
	Free resourcepb.Pools
}

// IsTerminal reports whether a task in state st will never run again.
func IsTerminal(st agorav1.TaskState) bool {
	switch st {
	case agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_FAILED,
		agorav1.TaskState_TASK_STATE_KILLED, agorav1.TaskState_TASK_STATE_ERROR,
		agorav1.TaskState_TASK_STATE_LOST, agorav1.TaskState_TASK_STATE_DROPPED,
		agorav1.TaskState_TASK_STATE_GONE, agorav1.TaskState_TASK_STATE_GONE_BY_OPERATOR,
		agorav1.TaskState_TASK_STATE_UNKNOWN:
		return true
	}
	return false
}
