package resources

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ErrInsufficient is wrapped by Subtract when the subtrahend is not contained.
var ErrInsufficient = errors.New("resources: insufficient")

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("resources: invalid spec")

// MaxScalar is the largest scalar value Parse accepts, in units. It keeps
// milli-unit arithmetic far away from int64 overflow.
const MaxScalar = 1e12

// Range is an inclusive range of integers, e.g. ports.
type Range struct{ Begin, End uint64 }

// Len is the number of values in the range.
func (g Range) Len() uint64 { return g.End - g.Begin + 1 }

// Resources is a bag of scalar, range and set resources. Scalars are kept in
// milli-units (int64) so arithmetic is exact: cpus 0.5 -> 500; mem in MiB
// 1024 -> 1024000. The zero value is empty.
type Resources struct {
	// Scalars maps a name to its amount in milli-units; only positive values are kept.
	Scalars map[string]int64
	// Ranges maps a name to sorted, coalesced, non-overlapping ranges.
	Ranges map[string][]Range
	// Sets maps a name to sorted, unique items.
	Sets map[string][]string
}

// Scalar returns a Resources holding one scalar of v units (rounded to
// milli-units). Non-positive, NaN or infinite values give an empty Resources.
func Scalar(name string, v float64) Resources {
	m := toMilli(v)
	if m <= 0 {
		return Resources{}
	}
	return Resources{Scalars: map[string]int64{name: m}}
}

// Milli returns a Resources holding one scalar of m milli-units.
func Milli(name string, m int64) Resources {
	if m <= 0 {
		return Resources{}
	}
	return Resources{Scalars: map[string]int64{name: m}}
}

// Ranges returns a Resources holding the given ranges under name,
// normalised (sorted, coalesced); ranges with Begin > End are ignored.
func Ranges(name string, rs ...Range) Resources {
	var out []Range
	for _, g := range rs {
		if g.Begin <= g.End {
			out = append(out, g)
		}
	}
	out = normalizeRanges(out)
	if len(out) == 0 {
		return Resources{}
	}
	return Resources{Ranges: map[string][]Range{name: out}}
}

// Set returns a Resources holding the given items under name (sorted, unique).
func Set(name string, items ...string) Resources {
	out := slices.Clone(items)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return Resources{}
	}
	return Resources{Sets: map[string][]string{name: out}}
}

func toMilli(v float64) int64 {
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0
	}
	if v > MaxScalar {
		v = MaxScalar
	}
	return int64(math.Round(v * 1000))
}

// MustParse is Parse that panics on error; for tests and constants.
func MustParse(spec string) Resources {
	r, err := Parse(spec)
	if err != nil {
		panic(err)
	}
	return r
}

// Parse reads a spec such as
// 'cpus:4;mem:8192;disk:20000;gpus:0;ports:[31000-32000,33000-33010];zones:{a,b}'.
// An empty (or blank) spec gives an empty Resources. Zero scalars are
// dropped; scalars are rounded to milli-units. Errors wrap ErrSyntax.
func Parse(spec string) (Resources, error) {
	var r Resources
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, ":")
		if !ok {
			return Resources{}, fmt.Errorf("%w: %q: want name:value", ErrSyntax, part)
		}
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if !ValidName(name) {
			return Resources{}, fmt.Errorf("%w: bad name %q: want [a-z][a-z0-9_.-]*", ErrSyntax, name)
		}
		if seen[name] {
			return Resources{}, fmt.Errorf("%w: duplicate name %q", ErrSyntax, name)
		}
		seen[name] = true
		switch {
		case strings.HasPrefix(val, "["):
			rs, err := parseRanges(val)
			if err != nil {
				return Resources{}, fmt.Errorf("%w: %s: %w", ErrSyntax, name, err)
			}
			if len(rs) > 0 {
				if r.Ranges == nil {
					r.Ranges = map[string][]Range{}
				}
				r.Ranges[name] = rs
			}
		case strings.HasPrefix(val, "{"):
			items, err := parseSet(val)
			if err != nil {
				return Resources{}, fmt.Errorf("%w: %s: %w", ErrSyntax, name, err)
			}
			if len(items) > 0 {
				if r.Sets == nil {
					r.Sets = map[string][]string{}
				}
				r.Sets[name] = items
			}
		default:
			m, err := parseScalar(val)
			if err != nil {
				return Resources{}, fmt.Errorf("%w: %s: %w", ErrSyntax, name, err)
			}
			if m > 0 {
				if r.Scalars == nil {
					r.Scalars = map[string]int64{}
				}
				r.Scalars[name] = m
			}
		}
	}
	return r, nil
}

// ValidName reports whether s is a resource name: [a-z][a-z0-9_.-]*.
func ValidName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DefaultRole is the role of every framework that names none; unreserved
// resources are offered to it (and to every other role).
const DefaultRole = "*"

// ValidRoleName reports whether name is a role a framework may hold and an
// operator may configure: DefaultRole, or ^[a-z][a-z0-9_.-]{0,63}$.
func ValidRoleName(name string) bool {
	return name == DefaultRole || len(name) <= 64 && ValidName(name)
}

// ValidReservationRole reports whether resources (and volumes) may be
// reserved for role: any valid role name except DefaultRole, since
// reserving for "*" would be another name for unreserved.
func ValidReservationRole(role string) bool {
	return role != DefaultRole && ValidRoleName(role)
}

func validItem(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

func parseScalar(val string) (int64, error) {
	if val == "" {
		return 0, errors.New("empty value")
	}
	v, err := strconv.ParseFloat(val, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", val)
	}
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return 0, fmt.Errorf("value %q is not finite", val)
	case v < 0:
		return 0, fmt.Errorf("value %q is negative", val)
	case v > MaxScalar:
		return 0, fmt.Errorf("value %q exceeds %g", val, float64(MaxScalar))
	}
	return int64(math.Round(v * 1000)), nil
}

func parseRanges(val string) ([]Range, error) {
	if !strings.HasSuffix(val, "]") {
		return nil, fmt.Errorf("range list %q: missing ']'", val)
	}
	body := strings.TrimSpace(val[1 : len(val)-1])
	if body == "" {
		return nil, nil
	}
	var rs []Range
	for item := range strings.SplitSeq(body, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isPair := strings.Cut(item, "-")
		b, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("range %q: bad begin", item)
		}
		e := b
		if isPair {
			e, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("range %q: bad end", item)
			}
		}
		if b > e {
			return nil, fmt.Errorf("range %q: begin after end", item)
		}
		rs = append(rs, Range{b, e})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
	for i := 1; i < len(rs); i++ {
		if rs[i].Begin <= rs[i-1].End {
			return nil, fmt.Errorf("ranges %d-%d and %d-%d overlap", rs[i-1].Begin, rs[i-1].End, rs[i].Begin, rs[i].End)
		}
	}
	return normalizeRanges(rs), nil
}

func parseSet(val string) ([]string, error) {
	if !strings.HasSuffix(val, "}") {
		return nil, fmt.Errorf("set %q: missing '}'", val)
	}
	body := strings.TrimSpace(val[1 : len(val)-1])
	if body == "" {
		return nil, nil
	}
	var items []string
	for it := range strings.SplitSeq(body, ",") {
		it = strings.TrimSpace(it)
		if !validItem(it) {
			return nil, fmt.Errorf("set item %q: want [A-Za-z0-9_./-]+", it)
		}
		items = append(items, it)
	}
	slices.Sort(items)
	for i := 1; i < len(items); i++ {
		if items[i] == items[i-1] {
			return nil, fmt.Errorf("set item %q repeated", items[i])
		}
	}
	return items, nil
}

// normalizeRanges sorts and coalesces overlapping or adjacent ranges, in place.
func normalizeRanges(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
	out := rs[:1]
	for _, g := range rs[1:] {
		last := &out[len(out)-1]
		if last.End == math.MaxUint64 || g.Begin <= last.End+1 {
			if g.End > last.End {
				last.End = g.End
			}
			continue
		}
		out = append(out, g)
	}
	return out
}

// String returns the canonical text form: names sorted, scalars in units with
// at most three decimals, ranges as [b-e,...], sets as {a,b}. Parse of the
// result equals r.
func (r Resources) String() string {
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
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(n)
		b.WriteByte(':')
		if m, ok := r.Scalars[n]; ok && m > 0 {
			b.WriteString(FormatMilli(m))
		} else if rs, ok := r.Ranges[n]; ok && len(rs) > 0 {
			b.WriteByte('[')
			for j, g := range rs {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatUint(g.Begin, 10))
				b.WriteByte('-')
				b.WriteString(strconv.FormatUint(g.End, 10))
			}
			b.WriteByte(']')
		} else {
			b.WriteByte('{')
			b.WriteString(strings.Join(r.Sets[n], ","))
			b.WriteByte('}')
		}
	}
	return b.String()
}

// FormatMilli formats milli-units as units with at most three decimals and
// no trailing zeros: 1500 -> "1.5", 2000 -> "2".
func FormatMilli(m int64) string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(m/1000, 10)
	if f := m % 1000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%03d", f), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// IsEmpty reports whether r holds nothing.
func (r Resources) IsEmpty() bool {
	for _, v := range r.Scalars {
		if v > 0 {
			return false
		}
	}
	for _, v := range r.Ranges {
		if len(v) > 0 {
			return false
		}
	}
	for _, v := range r.Sets {
		if len(v) > 0 {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of r.
func (r Resources) Clone() Resources {
	var c Resources
	for n, v := range r.Scalars {
		if v > 0 {
			if c.Scalars == nil {
				c.Scalars = make(map[string]int64, len(r.Scalars))
			}
			c.Scalars[n] = v
		}
	}
	for n, v := range r.Ranges {
		if len(v) > 0 {
			if c.Ranges == nil {
				c.Ranges = make(map[string][]Range, len(r.Ranges))
			}
			c.Ranges[n] = slices.Clone(v)
		}
	}
	for n, v := range r.Sets {
		if len(v) > 0 {
			if c.Sets == nil {
				c.Sets = make(map[string][]string, len(r.Sets))
			}
			c.Sets[n] = slices.Clone(v)
		}
	}
	return c
}

// Equal reports whether r and o hold the same resources (nil and empty maps
// are equal).
func (r Resources) Equal(o Resources) bool {
	return r.Contains(o) && o.Contains(r)
}

// Scalar returns the named scalar in units (0 if absent).
func (r Resources) Scalar(name string) float64 {
	return float64(r.Scalars[name]) / 1000
}

// Milli returns the named scalar in milli-units (0 if absent).
func (r Resources) Milli(name string) int64 {
	return r.Scalars[name]
}

// Names returns the sorted names of r's positive scalars.
func (r Resources) Names() []string {
	names := make([]string, 0, len(r.Scalars))
	for n, v := range r.Scalars {
		if v > 0 {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Add returns r + o; r and o are not modified. Ranges and sets are united
// (adding a value already held is a no-op). Scalar sums saturate at
// math.MaxInt64 rather than wrap.
func (r Resources) Add(o Resources) Resources {
	c := r.Clone()
	for n, v := range o.Scalars {
		if v <= 0 {
			continue
		}
		if c.Scalars == nil {
			c.Scalars = map[string]int64{}
		}
		s := c.Scalars[n]
		if s > math.MaxInt64-v {
			c.Scalars[n] = math.MaxInt64
		} else {
			c.Scalars[n] = s + v
		}
	}
	for n, v := range o.Ranges {
		if len(v) == 0 {
			continue
		}
		if c.Ranges == nil {
			c.Ranges = map[string][]Range{}
		}
		merged := append(slices.Clone(c.Ranges[n]), v...)
		c.Ranges[n] = normalizeRanges(merged)
	}
	for n, v := range o.Sets {
		if len(v) == 0 {
			continue
		}
		if c.Sets == nil {
			c.Sets = map[string][]string{}
		}
		merged := append(slices.Clone(c.Sets[n]), v...)
		slices.Sort(merged)
		c.Sets[n] = slices.Compact(merged)
	}
	return c
}

// Contains reports whether o is a sub-bag of r.
func (r Resources) Contains(o Resources) bool {
	return r.missing(o) == ""
}

// missing names the first resource of o not held by r, or "".
func (r Resources) missing(o Resources) string {
	for n, v := range o.Scalars {
		if v > 0 && r.Scalars[n] < v {
			return n
		}
	}
	for n, v := range o.Ranges {
		if !rangesContain(r.Ranges[n], v) {
			return n
		}
	}
	for n, v := range o.Sets {
		have := r.Sets[n]
		for _, it := range v {
			if _, ok := slices.BinarySearch(have, it); !ok {
				return n
			}
		}
	}
	return ""
}

// rangesContain reports whether every value of sub is in super (both normalised).
func rangesContain(super, sub []Range) bool {
	i := 0
	for _, g := range sub {
		for i < len(super) && super[i].End < g.Begin {
			i++
		}
		if i == len(super) || super[i].Begin > g.Begin || super[i].End < g.End {
			return false
		}
	}
	return true
}

// Subtract returns r - o. It fails, wrapping ErrInsufficient, if r does not
// contain o; r and o are not modified.
func (r Resources) Subtract(o Resources) (Resources, error) {
	if n := r.missing(o); n != "" {
		return Resources{}, fmt.Errorf("%w: %s: need %s, have %s", ErrInsufficient, n, o.only(n), r.only(n))
	}
	c := r.Clone()
	for n, v := range o.Scalars {
		if v <= 0 {
			continue
		}
		if left := c.Scalars[n] - v; left > 0 {
			c.Scalars[n] = left
		} else {
			delete(c.Scalars, n)
		}
	}
	for n, v := range o.Ranges {
		if len(v) == 0 {
			continue
		}
		if left := subtractRanges(c.Ranges[n], v); len(left) > 0 {
			c.Ranges[n] = left
		} else {
			delete(c.Ranges, n)
		}
	}
	for n, v := range o.Sets {
		if len(v) == 0 {
			continue
		}
		left := slices.DeleteFunc(c.Sets[n], func(it string) bool {
			_, found := slices.BinarySearch(v, it)
			return found
		})
		if len(left) > 0 {
			c.Sets[n] = left
		} else {
			delete(c.Sets, n)
		}
	}
	return c, nil
}

// only returns the part of r named n, as text.
func (r Resources) only(n string) string {
	var p Resources
	if v, ok := r.Scalars[n]; ok {
		p.Scalars = map[string]int64{n: v}
	}
	if v, ok := r.Ranges[n]; ok {
		p.Ranges = map[string][]Range{n: v}
	}
	if v, ok := r.Sets[n]; ok {
		p.Sets = map[string][]string{n: v}
	}
	if p.IsEmpty() {
		return n + ":0"
	}
	return p.String()
}

// subtractRanges removes sub from super (both normalised, sub contained).
func subtractRanges(super, sub []Range) []Range {
	var out []Range
	j := 0
	for _, g := range super {
		cur := g
		alive := true
		for j < len(sub) && sub[j].End < cur.Begin {
			j++
		}
		k := j
		for alive && k < len(sub) && sub[k].Begin <= cur.End {
			s := sub[k]
			if s.Begin > cur.Begin {
				out = append(out, Range{cur.Begin, s.Begin - 1})
			}
			if s.End >= cur.End {
				alive = false
				break
			}
			cur.Begin = s.End + 1
			k++
		}
		if alive {
			out = append(out, cur)
		}
	}
	return out
}

// PickRanges returns the n lowest values of the named ranges, or false if
// fewer than n are held. n <= 0 gives nil, true.
func (r Resources) PickRanges(name string, n int) ([]uint64, bool) {
	if n <= 0 {
		return nil, true
	}
	var out []uint64
	for _, g := range r.Ranges[name] {
		for v := g.Begin; ; v++ {
			out = append(out, v)
			if len(out) == n {
				return out, true
			}
			if v == g.End {
				break
			}
		}
	}
	return nil, false
}

// ValuesToRanges turns values (any order, duplicates allowed) into a
// Resources holding them as ranges under name; handy with PickRanges.
func ValuesToRanges(name string, vals []uint64) Resources {
	rs := make([]Range, len(vals))
	for i, v := range vals {
		rs[i] = Range{v, v}
	}
	return Ranges(name, rs...)
}
