package resourcepb

import (
	"errors"
	"math"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestFromProtoErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []*agorav1.Resource
		want string
	}{
		{"null", []*agorav1.Resource{nil}, "null"},
		{"bad name", []*agorav1.Resource{{Name: "Cpus", Scalar: 1}}, "bad resource name"},
		{"empty name", []*agorav1.Resource{{Scalar: 1}}, "bad resource name"},
		{"bad role", []*agorav1.Resource{{Name: "cpus", Scalar: 1, Role: "*"}}, "bad role"},
		{"negative", []*agorav1.Resource{{Name: "cpus", Scalar: -1}}, "negative"},
		{"nan", []*agorav1.Resource{{Name: "cpus", Scalar: math.NaN()}}, "not finite"},
		{"inf", []*agorav1.Resource{{Name: "cpus", Scalar: math.Inf(1)}}, "not finite"},
		{"huge", []*agorav1.Resource{{Name: "cpus", Scalar: 1e13}}, "exceeds"},
		{"mixed", []*agorav1.Resource{{Name: "ports", Scalar: 1, Ranges: []*agorav1.Range{{Begin: 1, End: 2}}}}, "mixes"},
		{"mixed set", []*agorav1.Resource{{Name: "z", Set: []string{"a"}, Ranges: []*agorav1.Range{{Begin: 1, End: 2}}}}, "mixes"},
		{"reversed", []*agorav1.Resource{{Name: "ports", Ranges: []*agorav1.Range{{Begin: 3, End: 2}}}}, "begin after end"},
		{"overlap", []*agorav1.Resource{{Name: "ports", Ranges: []*agorav1.Range{{Begin: 5, End: 9}, {Begin: 1, End: 5}}}}, "overlap"},
		{"empty item", []*agorav1.Resource{{Name: "z", Set: []string{"a", ""}}}, "empty set item"},
		{"repeated item", []*agorav1.Resource{{Name: "z", Set: []string{"a", "a"}}}, "repeated"},
		{"duplicate", []*agorav1.Resource{{Name: "cpus", Scalar: 1}, {Name: "cpus", Scalar: 2}}, "given twice"},
		{"duplicate in role", []*agorav1.Resource{{Name: "cpus", Scalar: 1, Role: "web"}, {Name: "cpus", Ranges: []*agorav1.Range{{Begin: 1, End: 1}}, Role: "web"}}, "given twice for role"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromProto(c.in)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("FromProto = %v, want ErrInvalid containing %q", err, c.want)
			}
		})
	}
}

func TestFromProtoPools(t *testing.T) {
	p, err := FromProto([]*agorav1.Resource{
		{Name: "cpus", Scalar: 2},
		{Name: "cpus", Scalar: 1, Role: "web"},
		{Name: "ports", Ranges: []*agorav1.Range{{Begin: 10, End: 12}, {Begin: 1, End: 3}}},
		{Name: "zones", Set: []string{"b", "a"}},
		{Name: "gpus", Scalar: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.String(); got != "cpus:2;ports:[1-3,10-12];zones:{a,b} web(cpus:1)" {
		t.Fatalf("pools %q", got)
	}
	back, err := FromProto(p.ToProto())
	if err != nil || !back.Equal(p) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if got := p.Total().String(); got != "cpus:3;ports:[1-3,10-12];zones:{a,b}" {
		t.Fatalf("total %q", got)
	}
	if wire := p.ToProto(); wire[0].GetRole() != "" || wire[len(wire)-1].GetRole() != "web" {
		t.Fatalf("order: %v", wire)
	}
}

func TestPoolsArithmetic(t *testing.T) {
	a := Pools{"": resources.MustParse("cpus:4;ports:[1-10]"), "web": resources.MustParse("disk:100")}
	b := Pools{"": resources.MustParse("cpus:1;ports:[2-3]"), "web": resources.MustParse("disk:100")}
	d, err := a.Subtract(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != "cpus:3;ports:[1-1,4-10]" {
		t.Fatalf("difference %q", got)
	}
	if _, ok := d["web"]; ok {
		t.Fatal("empty role kept")
	}
	if !a.Contains(b) || b.Contains(a) {
		t.Fatal("Contains")
	}
	if _, err := b.Subtract(a); !errors.Is(err, resources.ErrInsufficient) {
		t.Fatalf("over-subtract: %v", err)
	}
	if !d.Add(b).Equal(a) {
		t.Fatal("add back")
	}
	if !(Pools{"x": resources.Resources{}}).IsEmpty() || a.IsEmpty() {
		t.Fatal("IsEmpty")
	}
	c := a.Clone()
	c[""] = resources.Resources{}
	if a[""].IsEmpty() {
		t.Fatal("Clone shares the map")
	}
}

func TestIntersectProperty(t *testing.T) {
	gen := rapid.Custom(func(t *rapid.T) resources.Resources {
		r := resources.Milli("cpus", rapid.Int64Range(0, 5000).Draw(t, "cpus"))
		lo := rapid.Uint64Range(0, 50).Draw(t, "lo")
		r = r.Add(resources.Ranges("ports", resources.Range{Begin: lo, End: lo + rapid.Uint64Range(0, 20).Draw(t, "len")}))
		return r.Add(resources.Set("z", rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c"}), 0, 3).Draw(t, "z")...))
	})
	rapid.Check(t, func(t *rapid.T) {
		a, b := gen.Draw(t, "a"), gen.Draw(t, "b")
		i := Intersect(a, b)
		if !a.Contains(i) || !b.Contains(i) {
			t.Fatalf("intersection %s not in both %s and %s", i, a, b)
		}
		if !Intersect(b, a).Equal(i) {
			t.Fatal("not symmetric")
		}
		// a = (a - b) + (a ∩ b)
		if !SubtractClamped(a, b).Add(i).Equal(a) {
			t.Fatalf("a-b + a∩b != a for %s, %s", a, b)
		}
	})
}
