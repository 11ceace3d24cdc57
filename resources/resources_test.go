package resources

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestParseGood(t *testing.T) {
	cases := []struct {
		spec, want string
	}{
		{"", ""},
		{"   ", ""},
		{"cpus:4;mem:8192;disk:20000;gpus:0;ports:[31000-32000,33000-33010];zones:{a,b}",
			"cpus:4;disk:20000;mem:8192;ports:[31000-32000,33000-33010];zones:{a,b}"},
		{"cpus:0.5", "cpus:0.5"},
		{"cpus:0.1234", "cpus:0.123"},
		{"cpus:0.0005", "cpus:0.001"},
		{"cpus:0.0004", ""},
		{"cpus:1e3", "cpus:1000"},
		{" cpus : 2 ; mem : 10 ;", "cpus:2;mem:10"},
		{"my.res-1_x:3", "my.res-1_x:3"},
		{"ports:[]", ""},
		{"ports:[80]", "ports:[80-80]"},
		{"ports:[5-6,1-4]", "ports:[1-6]"},
		{"ports:[1-2, 4-5]", "ports:[1-2,4-5]"},
		{"ports:[0-18446744073709551615]", "ports:[0-18446744073709551615]"},
		{"zones:{}", ""},
		{"zones:{b, a,C}", "zones:{C,a,b}"},
		{"gpus:0;cpus:0", ""},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			r, err := Parse(c.spec)
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.spec, err)
			}
			if got := r.String(); got != c.want {
				t.Fatalf("Parse(%q).String() = %q, want %q", c.spec, got, c.want)
			}
			back := MustParse(r.String())
			if !back.Equal(r) {
				t.Fatalf("round trip of %q lost data: %v", c.spec, back)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	cases := []struct {
		spec, wantErr string
	}{
		{"cpus", "want name:value"},
		{"cpus:", "empty value"},
		{"cpus:-1", "negative"},
		{"cpus:NaN", "not finite"},
		{"cpus:Inf", "not finite"},
		{"cpus:abc", "bad number"},
		{"cpus:1e300", "exceeds"},
		{"Cpus:1", "bad name"},
		{"1cpus:1", "bad name"},
		{"cp us:1", "bad name"},
		{":1", "bad name"},
		{"cpus:1;cpus:2", "duplicate name"},
		{"cpus:1;cpus:[1-2]", "duplicate name"},
		{"ports:[1-2", "missing ']'"},
		{"ports:[2-1]", "begin after end"},
		{"ports:[a-3]", "bad begin"},
		{"ports:[1-b]", "bad end"},
		{"ports:[1-5,5-6]", "overlap"},
		{"ports:[1-5,,7]", "bad begin"},
		{"ports:[-1]", "bad begin"},
		{"zones:{a,b", "missing '}'"},
		{"zones:{a,a}", "repeated"},
		{"zones:{a,,b}", "set item"},
		{"zones:{a b}", "set item"},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			_, err := Parse(c.spec)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error containing %q", c.spec, c.wantErr)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", c.spec, err)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Parse(%q) error %q, want it to contain %q", c.spec, err, c.wantErr)
			}
		})
	}
}

func TestArithmetic(t *testing.T) {
	cases := []struct {
		a, b, sum, diff string // diff "" with diffErr means a-b fails
		contains        bool
	}{
		{"cpus:1", "cpus:0.5", "cpus:1.5", "cpus:0.5", true},
		{"cpus:0.1", "cpus:0.2", "cpus:0.3", "", false},
		{"cpus:1;mem:10", "mem:10", "cpus:1;mem:20", "cpus:1", true},
		{"cpus:1", "mem:1", "cpus:1;mem:1", "", false},
		{"ports:[1-10]", "ports:[3-4,8]", "ports:[1-10]", "ports:[1-2,5-7,9-10]", true},
		{"ports:[1-10]", "ports:[1-10]", "ports:[1-10]", "", true},
		{"ports:[1-10]", "ports:[11-12]", "ports:[1-12]", "", false},
		{"ports:[1-3,7-9]", "ports:[3-7]", "ports:[1-9]", "", false},
		{"ports:[1-3,7-9]", "ports:[3,7]", "ports:[1-3,7-9]", "ports:[1-2,8-9]", true},
		{"zones:{a,b,c}", "zones:{b}", "zones:{a,b,c}", "zones:{a,c}", true},
		{"zones:{a}", "zones:{b}", "zones:{a,b}", "", false},
		{"", "", "", "", true},
		{"cpus:2", "", "cpus:2", "cpus:2", true},
	}
	for _, c := range cases {
		t.Run(c.a+"/"+c.b, func(t *testing.T) {
			a, b := MustParse(c.a), MustParse(c.b)
			aStr, bStr := a.String(), b.String()
			if got := a.Add(b).String(); got != c.sum {
				t.Errorf("%s + %s = %s, want %s", c.a, c.b, got, c.sum)
			}
			if got := a.Contains(b); got != c.contains {
				t.Errorf("%s contains %s = %v, want %v", c.a, c.b, got, c.contains)
			}
			d, err := a.Subtract(b)
			switch {
			case c.contains && err != nil:
				t.Errorf("%s - %s: %v", c.a, c.b, err)
			case c.contains && d.String() != c.diff:
				t.Errorf("%s - %s = %s, want %s", c.a, c.b, d, c.diff)
			case !c.contains && !errors.Is(err, ErrInsufficient):
				t.Errorf("%s - %s: err %v, want ErrInsufficient", c.a, c.b, err)
			}
			if a.String() != aStr || b.String() != bStr {
				t.Errorf("inputs modified: %s, %s", a, b)
			}
		})
	}
}

func TestSubtractErrorNamesResource(t *testing.T) {
	_, err := MustParse("cpus:1;mem:64").Subtract(MustParse("mem:128"))
	if err == nil || !strings.Contains(err.Error(), "mem: need mem:128, have mem:64") {
		t.Fatalf("got %v", err)
	}
}

func TestAccessors(t *testing.T) {
	r := MustParse("cpus:1.5;mem:1024;ports:[10-11,20-22]")
	if got := r.Scalar("cpus"); got != 1.5 {
		t.Errorf("Scalar(cpus) = %v", got)
	}
	if got := r.Milli("mem"); got != 1024000 {
		t.Errorf("Milli(mem) = %v", got)
	}
	if got := r.Scalar("gpus"); got != 0 {
		t.Errorf("Scalar(gpus) = %v", got)
	}
	if got := r.Names(); !slices.Equal(got, []string{"cpus", "mem"}) {
		t.Errorf("Names = %v", got)
	}
	if got, ok := r.PickRanges("ports", 3); !ok || !slices.Equal(got, []uint64{10, 11, 20}) {
		t.Errorf("PickRanges 3 = %v %v", got, ok)
	}
	if _, ok := r.PickRanges("ports", 6); ok {
		t.Errorf("PickRanges 6 succeeded with 5 ports")
	}
	if got, ok := r.PickRanges("ports", 0); !ok || got != nil {
		t.Errorf("PickRanges 0 = %v %v", got, ok)
	}
	picked, _ := r.PickRanges("ports", 4)
	left, err := r.Subtract(ValuesToRanges("ports", picked))
	if err != nil || left.String() != "cpus:1.5;mem:1024;ports:[22-22]" {
		t.Errorf("after picking: %v %v", left, err)
	}
	if !Scalar("cpus", 0).IsEmpty() || !Scalar("cpus", -1).IsEmpty() || Scalar("cpus", 0.25).Milli("cpus") != 250 {
		t.Errorf("Scalar constructor")
	}
	if !(Resources{Scalars: map[string]int64{}}).Equal(Resources{}) {
		t.Errorf("empty maps differ from nil")
	}
	if !(Resources{}).IsEmpty() || r.IsEmpty() {
		t.Errorf("IsEmpty")
	}
	c := r.Clone()
	c.Scalars["cpus"] = 1
	c.Ranges["ports"][0].Begin = 0
	if r.Milli("cpus") != 1500 || r.Ranges["ports"][0].Begin != 10 {
		t.Errorf("Clone shares storage")
	}
}

// genResources draws a small Resources over a few names so collisions are likely.
func genResources() *rapid.Generator[Resources] {
	return rapid.Custom(func(t *rapid.T) Resources {
		var r Resources
		for _, n := range []string{"cpus", "mem", "gpus"} {
			if rapid.Bool().Draw(t, n+"?") {
				r = r.Add(Milli(n, rapid.Int64Range(0, 1e9).Draw(t, n)))
			}
		}
		nr := rapid.IntRange(0, 3).Draw(t, "nranges")
		for i := 0; i < nr; i++ {
			b := rapid.Uint64Range(0, 100).Draw(t, "b")
			l := rapid.Uint64Range(0, 20).Draw(t, "l")
			r = r.Add(Ranges("ports", Range{b, b + l}))
		}
		items := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c", "d"}), 0, 3).Draw(t, "zones")
		return r.Add(Set("zones", items...))
	})
}

func TestProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genResources().Draw(t, "a")
		b := genResources().Draw(t, "b")
		if !a.Add(b).Equal(b.Add(a)) {
			t.Fatalf("Add not commutative: %v + %v", a, b)
		}
		sum := a.Add(b)
		if !sum.Contains(a) || !sum.Contains(b) {
			t.Fatalf("%v + %v = %v does not contain its parts", a, b, sum)
		}
		// For scalars Add/Subtract are exact inverses; ranges and sets are
		// idempotent under Add, so only check a round trip on disjoint data.
		scal := Resources{Scalars: a.Scalars}
		back, err := scal.Add(b).Subtract(b)
		if err != nil {
			t.Fatalf("(%v + %v) - %v: %v", scal, b, b, err)
		}
		if !back.Contains(scal) {
			t.Fatalf("(%v + %v) - %v = %v lost scalars", scal, b, b, back)
		}
		if a.Contains(b) {
			d, err := a.Subtract(b)
			if err != nil {
				t.Fatalf("%v contains %v but Subtract failed: %v", a, b, err)
			}
			if !d.Add(b).Equal(a) {
				t.Fatalf("(%v - %v) + %v = %v", a, b, b, d.Add(b))
			}
		} else if _, err := a.Subtract(b); !errors.Is(err, ErrInsufficient) {
			t.Fatalf("%v does not contain %v but Subtract gave %v", a, b, err)
		}
		for _, r := range []Resources{a, b, sum} {
			p, err := Parse(r.String())
			if err != nil || !p.Equal(r) || p.String() != r.String() {
				t.Fatalf("round trip %q: %v %v", r.String(), p, err)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "cpus:4;mem:8192;disk:20000;gpus:0;ports:[31000-32000,33000-33010];zones:{a,b}",
		"cpus:0.0005", "ports:[1-2,3-4]", "zones:{a,a}", "x:1e12", "ports:[18446744073709551615]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		r, err := Parse(spec)
		if err != nil {
			return
		}
		s := r.String()
		p, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) ok but canonical %q fails: %v", spec, s, err)
		}
		if !p.Equal(r) || p.String() != s {
			t.Fatalf("round trip %q -> %q -> %q", spec, s, p.String())
		}
		if !r.Add(r).Contains(r) {
			t.Fatalf("r+r does not contain r for %q", s)
		}
		if d, err := r.Subtract(r); err != nil || !d.IsEmpty() {
			t.Fatalf("r-r = %v, %v for %q", d, err, s)
		}
	})
}

func ExampleParse() {
	r := MustParse("mem:1024;cpus:0.5;ports:[31000-31009]")
	left, _ := r.Subtract(MustParse("cpus:0.25"))
	fmt.Println(r)
	fmt.Println(left.Scalar("cpus"), left.Milli("mem"))
	// Output:
	// cpus:0.5;mem:1024;ports:[31000-31009]
	// 0.25 1024000
}

func TestRoleNames(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, c := range []struct {
		name              string
		role, reservation bool
	}{
		{"*", true, false},
		{"web", true, true},
		{"a.b-c_9", true, true},
		{long, true, true},
		{long + "a", false, false},
		{"", false, false},
		{"Web", false, false},
		{"9web", false, false},
		{"web/x", false, false},
		{"**", false, false},
	} {
		if got := ValidRoleName(c.name); got != c.role {
			t.Errorf("ValidRoleName(%q) = %v, want %v", c.name, got, c.role)
		}
		if got := ValidReservationRole(c.name); got != c.reservation {
			t.Errorf("ValidReservationRole(%q) = %v, want %v", c.name, got, c.reservation)
		}
	}
}

// FuzzArithmetic: for any two parsable resources a and b, a+b contains
// both and addition commutes; a contains b exactly when a-b succeeds, and
// then what is left plus b is a again; of scalars (counted, unlike ranges
// and sets, which add as a union), (a+b)-b = a.
func FuzzArithmetic(f *testing.F) {
	for _, p := range [][2]string{
		{"cpus:4;mem:8192;ports:[31000-31999]", "cpus:1;ports:[31000-31000]"},
		{"cpus:0.001", "cpus:0.001"},
		{"zones:{a,b}", "zones:{b}"},
		{"", "mem:1"},
		{"x:1e12", "x:1e12;y:1"},
		{"ports:[1-2,5-9]", "ports:[2-5]"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, as, bs string) {
		a, err1 := Parse(as)
		b, err2 := Parse(bs)
		if err1 != nil || err2 != nil {
			return
		}
		sum := a.Add(b)
		if !sum.Equal(b.Add(a)) {
			t.Fatalf("%v + %v != %v + %v", a, b, b, a)
		}
		if !sum.Contains(a) || !sum.Contains(b) {
			t.Fatalf("%v + %v = %v does not contain both", a, b, sum)
		}
		sa, sb := Resources{Scalars: a.Scalars}, Resources{Scalars: b.Scalars}
		back, err := sa.Add(sb).Subtract(sb)
		if err != nil || !back.Equal(sa) {
			t.Fatalf("scalars: (%v + %v) - %v = %v, %v; want %v", sa, sb, sb, back, err, sa)
		}
		left, err := a.Subtract(b)
		if (err == nil) != a.Contains(b) {
			t.Fatalf("%v - %v: err %v, but Contains says %v", a, b, err, a.Contains(b))
		}
		if err == nil && !left.Add(b).Equal(a) {
			t.Fatalf("(%v - %v) + %v = %v, want %v", a, b, b, left.Add(b), a)
		}
	})
}
