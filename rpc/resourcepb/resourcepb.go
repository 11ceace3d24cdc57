package resourcepb

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// ErrInvalid is wrapped by every FromProto error; callers map it to
// InvalidArgument.
var ErrInvalid = errors.New("resourcepb: invalid resource")

// Pools groups resources by reservation role; "" is the unreserved pool.
// A Pools built by this package never holds an empty entry.
type Pools map[string]resources.Resources

// FromProto converts wire resources into pools keyed by their role. It fails
// (wrapping ErrInvalid) on a bad name or role, a negative, NaN, infinite or
// huge scalar, ranges with begin after end or overlapping each other, empty
// or repeated set items, a resource that mixes kinds, or a name given twice
// within one role (and one reservation: an offer may list a role's disk
// once per reservation it comes from).
//
// A resource that names a persistent volume (offers list idle volumes so)
// describes disk the volume already holds: it is validated but left out
// of the pools; IdleVolumes lists them.
func FromProto(rs []*agorav1.Resource) (Pools, error) {
	p := Pools{}
	type key struct{ role, name, reservation string }
	seen := make(map[key]bool, len(rs))
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("%w: resource %d is null", ErrInvalid, i)
		}
		if !resources.ValidName(r.GetName()) {
			return nil, fmt.Errorf("%w: bad resource name %q: want [a-z][a-z0-9_.-]*", ErrInvalid, r.GetName())
		}
		if role := r.GetRole(); role != "" && !resources.ValidReservationRole(role) {
			return nil, fmt.Errorf("%w: %s: bad role %q", ErrInvalid, r.GetName(), role)
		}
		if v := r.GetVolume(); v != nil {
			if v.GetId() == "" || r.GetRole() == "" || r.GetName() != "disk" {
				return nil, fmt.Errorf("%w: volume resource %q needs an id, a role and the name disk", ErrInvalid, v.GetId())
			}
			continue
		}
		k := key{r.GetRole(), r.GetName(), r.GetReservation().GetId()}
		if seen[k] {
			if k.role == "" {
				return nil, fmt.Errorf("%w: resource %q given twice", ErrInvalid, k.name)
			}
			return nil, fmt.Errorf("%w: resource %q given twice for role %q", ErrInvalid, k.name, k.role)
		}
		seen[k] = true
		one, err := fromOne(r)
		if err != nil {
			return nil, err
		}
		if one.IsEmpty() {
			continue
		}
		p[k.role] = p[k.role].Add(one)
	}
	return p, nil
}

func fromOne(r *agorav1.Resource) (resources.Resources, error) {
	name := r.GetName()
	hasRanges, hasSet := len(r.GetRanges()) > 0, len(r.GetSet()) > 0
	if (hasRanges && hasSet) || ((hasRanges || hasSet) && r.GetScalar() != 0) {
		return resources.Resources{}, fmt.Errorf("%w: %s mixes scalar, ranges and set", ErrInvalid, name)
	}
	switch {
	case hasRanges:
		rs := make([]resources.Range, 0, len(r.GetRanges()))
		for _, g := range r.GetRanges() {
			if g.GetBegin() > g.GetEnd() {
				return resources.Resources{}, fmt.Errorf("%w: %s: range %d-%d has begin after end", ErrInvalid, name, g.GetBegin(), g.GetEnd())
			}
			rs = append(rs, resources.Range{Begin: g.GetBegin(), End: g.GetEnd()})
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
		for i := 1; i < len(rs); i++ {
			if rs[i].Begin <= rs[i-1].End {
				return resources.Resources{}, fmt.Errorf("%w: %s: ranges %d-%d and %d-%d overlap", ErrInvalid, name, rs[i-1].Begin, rs[i-1].End, rs[i].Begin, rs[i].End)
			}
		}
		return resources.Ranges(name, rs...), nil
	case hasSet:
		items := slices.Clone(r.GetSet())
		slices.Sort(items)
		for i, it := range items {
			if it == "" {
				return resources.Resources{}, fmt.Errorf("%w: %s: empty set item", ErrInvalid, name)
			}
			if i > 0 && items[i-1] == it {
				return resources.Resources{}, fmt.Errorf("%w: %s: set item %q repeated", ErrInvalid, name, it)
			}
		}
		return resources.Set(name, items...), nil
	default:
		v := r.GetScalar()
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			return resources.Resources{}, fmt.Errorf("%w: %s: value is not finite", ErrInvalid, name)
		case v < 0:
			return resources.Resources{}, fmt.Errorf("%w: %s: value %g is negative", ErrInvalid, name, v)
		case v > resources.MaxScalar:
			return resources.Resources{}, fmt.Errorf("%w: %s: value %g exceeds %g", ErrInvalid, name, v, float64(resources.MaxScalar))
		}
		return resources.Scalar(name, v), nil
	}
}

// ToProto converts r into wire resources with the given role, sorted by
// name (scalars, ranges and sets interleaved by name).
func ToProto(role string, r resources.Resources) []*agorav1.Resource {
	names := make([]string, 0, len(r.Scalars)+len(r.Ranges)+len(r.Sets))
	for n, v := range r.Scalars {
		if v > 0 {
			names = append(names, n)
		}
	}
	for n, v := range r.Ranges {
		if len(v) > 0 {
			names = append(names, n)
		}
	}
	for n, v := range r.Sets {
		if len(v) > 0 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]*agorav1.Resource, 0, len(names))
	for _, n := range names {
		switch {
		case r.Scalars[n] > 0:
			out = append(out, &agorav1.Resource{Name: n, Scalar: float64(r.Scalars[n]) / 1000, Role: role})
		case len(r.Ranges[n]) > 0:
			rs := make([]*agorav1.Range, len(r.Ranges[n]))
			for i, g := range r.Ranges[n] {
				rs[i] = &agorav1.Range{Begin: g.Begin, End: g.End}
			}
			out = append(out, &agorav1.Resource{Name: n, Ranges: rs, Role: role})
		default:
			out = append(out, &agorav1.Resource{Name: n, Set: slices.Clone(r.Sets[n]), Role: role})
		}
	}
	return out
}

// Roles returns the roles of p with non-empty resources, sorted ("" first).
func (p Pools) Roles() []string {
	roles := make([]string, 0, len(p))
	for role, r := range p {
		if !r.IsEmpty() {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	return roles
}

// ToProto converts p into wire resources: roles sorted ("" first), names
// sorted within a role.
func (p Pools) ToProto() []*agorav1.Resource {
	var out []*agorav1.Resource
	for _, role := range p.Roles() {
		out = append(out, ToProto(role, p[role])...)
	}
	return out
}

// Add returns p + o role by role; p and o are not modified.
func (p Pools) Add(o Pools) Pools {
	c := p.Clone()
	for role, r := range o {
		if r.IsEmpty() {
			continue
		}
		c[role] = c[role].Add(r)
	}
	return c
}

// Subtract returns p - o role by role. It fails, wrapping
// resources.ErrInsufficient, if some role of p does not contain o's part.
func (p Pools) Subtract(o Pools) (Pools, error) {
	c := p.Clone()
	for _, role := range o.Roles() {
		left, err := c[role].Subtract(o[role])
		if err != nil {
			if role == "" {
				return nil, fmt.Errorf("unreserved: %w", err)
			}
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		if left.IsEmpty() {
			delete(c, role)
		} else {
			c[role] = left
		}
	}
	return c, nil
}

// Contains reports whether every role of o is contained in the same role of p.
func (p Pools) Contains(o Pools) bool {
	for role, r := range o {
		if !p[role].Contains(r) {
			return false
		}
	}
	return true
}

// Total returns all roles flattened into one Resources.
func (p Pools) Total() resources.Resources {
	var t resources.Resources
	for _, role := range p.Roles() {
		t = t.Add(p[role])
	}
	return t
}

// IsEmpty reports whether p holds nothing.
func (p Pools) IsEmpty() bool {
	for _, r := range p {
		if !r.IsEmpty() {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of p without empty entries.
func (p Pools) Clone() Pools {
	c := make(Pools, len(p))
	for role, r := range p {
		if !r.IsEmpty() {
			c[role] = r.Clone()
		}
	}
	return c
}

// Equal reports whether p and o hold the same resources in every role.
func (p Pools) Equal(o Pools) bool {
	return p.Contains(o) && o.Contains(p)
}

// String is a compact deterministic text form: "cpus:1;mem:2" for the
// unreserved pool, "role(cpus:1)" for reserved ones, joined by " ".
func (p Pools) String() string {
	s := ""
	for i, role := range p.Roles() {
		if i > 0 {
			s += " "
		}
		if role == "" {
			s += p[role].String()
		} else {
			s += role + "(" + p[role].String() + ")"
		}
	}
	return s
}

// Intersect returns the resources held by both a and b.
func Intersect(a, b resources.Resources) resources.Resources {
	var out resources.Resources
	for n, v := range a.Scalars {
		if w := b.Scalars[n]; v > 0 && w > 0 {
			out = out.Add(resources.Milli(n, min(v, w)))
		}
	}
	for n, ra := range a.Ranges {
		rb := b.Ranges[n]
		var both []resources.Range
		i, j := 0, 0
		for i < len(ra) && j < len(rb) {
			lo, hi := max(ra[i].Begin, rb[j].Begin), min(ra[i].End, rb[j].End)
			if lo <= hi {
				both = append(both, resources.Range{Begin: lo, End: hi})
			}
			if ra[i].End < rb[j].End {
				i++
			} else {
				j++
			}
		}
		out = out.Add(resources.Ranges(n, both...))
	}
	for n, sa := range a.Sets {
		var both []string
		for _, it := range sa {
			if _, ok := slices.BinarySearch(b.Sets[n], it); ok {
				both = append(both, it)
			}
		}
		out = out.Add(resources.Set(n, both...))
	}
	return out
}

// SubtractClamped returns a - b, ignoring the parts of b that a does not hold.
func SubtractClamped(a, b resources.Resources) resources.Resources {
	left, err := a.Subtract(Intersect(a, b))
	if err != nil {
		// Unreachable: the intersection is always contained in a.
		return a
	}
	return left
}

// IdleVolumes returns the volume resources of rs (those with a volume set),
// in order: the persistent volumes an offer carries.
func IdleVolumes(rs []*agorav1.Resource) []*agorav1.Resource {
	var out []*agorav1.Resource
	for _, r := range rs {
		if r.GetVolume() != nil {
			out = append(out, r)
		}
	}
	return out
}
