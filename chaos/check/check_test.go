package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

func w(client int, key string, v float64, call, ret int64) RegisterOp {
	return RegisterOp{Client: client, Key: key, Write: true, Value: v, Call: call, Return: ret}
}

func r(client int, key string, v float64, call, ret int64) RegisterOp {
	return RegisterOp{Client: client, Key: key, Value: v, Call: call, Return: ret}
}

func TestRolesLinearizable(t *testing.T) {
	ops := []RegisterOp{
		w(0, "a", 1, 0, 10),
		r(1, "a", 1, 11, 12),
		w(0, "a", 2, 13, 20),
		r(1, "a", 1, 14, 15), // concurrent with the write of 2: may see 1
		r(1, "a", 2, 16, 25),
		w(2, "b", 7, 0, Pending), // outcome unknown: may apply late
		r(1, "b", Absent, 30, 31),
		r(1, "b", 7, 32, 33),
	}
	res := Roles(ops, 0)
	if !res.Linearizable() || len(res.Violations()) != 0 {
		t.Fatalf("valid history judged %s", res.Result)
	}
}

func TestRolesCatchesStaleRead(t *testing.T) {
	ops := []RegisterOp{
		w(0, "a", 1, 0, 10),
		w(0, "a", 2, 11, 20),
		r(1, "a", 1, 21, 22), // stale: the write of 2 had returned
	}
	res := Roles(ops, 0)
	if res.Linearizable() {
		t.Fatal("stale read not caught")
	}
	if v := res.Violations(); len(v) != 1 || v[0].Checker != "linearizability" {
		t.Fatalf("violations %v", v)
	}
	path := filepath.Join(t.TempDir(), "lin.html")
	if err := res.Visualize(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualisation not written: %v", err)
	}
}

func TestRolesCatchesReadOfNeverWrittenValue(t *testing.T) {
	res := Roles([]RegisterOp{w(0, "a", 1, 0, 10), r(1, "a", 3, 11, 12)}, 0)
	if res.Linearizable() {
		t.Fatal("read of a value nobody wrote not caught")
	}
}

func TestLostWrites(t *testing.T) {
	ops := []RegisterOp{
		w(0, "a", 1, 0, 10),
		w(0, "a", 2, 11, 20),
		w(1, "b", 5, 0, 10),
		w(2, "b", 6, 5, Pending), // may have applied after 5
		w(1, "c", 8, 0, 10),
		w(2, "c", 9, 5, 12), // concurrent with 8: either may be last
	}
	if v := LostWrites(ops, map[string]float64{"a": 2, "b": 6, "c": 8}); len(v) != 0 {
		t.Fatalf("false positives: %v", v)
	}
	if v := LostWrites(ops, map[string]float64{"a": 2, "b": 5, "c": 9}); len(v) != 0 {
		t.Fatalf("false positives: %v", v)
	}
	// Planted: the acknowledged write of 2 is lost (state rolled back to 1).
	v := LostWrites(ops, map[string]float64{"a": 1, "b": 5, "c": 8})
	if len(v) != 1 || v[0].Checker != "lost-write" || !strings.Contains(v[0].Detail, "role a") {
		t.Fatalf("lost write not caught: %v", v)
	}
	// Planted: role b vanished entirely.
	if v := LostWrites(ops, map[string]float64{"a": 2, "c": 8}); len(v) != 1 {
		t.Fatalf("vanished role not caught: %v", v)
	}
}

func agent(spec string) AgentView {
	return AgentView{ID: "a1", Total: resources.MustParse(spec), Reserved: map[string]resources.Resources{}}
}

func claim(owner, pool, spec string) Claim {
	return Claim{Owner: owner, Pool: pool, Res: resources.MustParse(spec)}
}

func TestCheckAllocation(t *testing.T) {
	ok := agent("cpus:4;mem:1024;ports:[100-200]")
	ok.Reserved["web"] = resources.MustParse("cpus:1;mem:256")
	ok.Claims = []Claim{
		claim("task f/t1", "", "cpus:2;mem:512;ports:[100-100]"),
		claim("offer o1", "", "cpus:1;mem:256;ports:[101-150]"),
		claim("task f/t2", "web", "cpus:1;mem:128"),
	}
	if v := CheckAllocation(7, []AgentView{ok}); len(v) != 0 {
		t.Fatalf("false positives: %v", v)
	}

	cases := map[string]AgentView{}
	over := ok
	over.Claims = append([]Claim{}, ok.Claims...)
	over.Claims = append(over.Claims, claim("offer o2", "", "cpus:0.5")) // 2+1+0.5 unreserved + 1 reserved > 4
	cases["offered twice"] = over
	ports := ok
	ports.Claims = append([]Claim{claim("offer o3", "", "ports:[150-160]")}, ok.Claims...)
	cases["same port"] = ports
	role := ok
	role.Claims = append([]Claim{claim("task f/t3", "web", "cpus:0.5")}, ok.Claims...)
	cases["over reservation"] = role
	other := ok
	other.Claims = []Claim{claim("task f/t4", "db", "cpus:0.1")}
	cases["unreserved role"] = other
	res := agent("cpus:1")
	res.Reserved["web"] = resources.MustParse("cpus:1")
	res.Reserved["db"] = resources.MustParse("cpus:1")
	cases["reservations over capacity"] = res
	for name, a := range cases {
		v := CheckAllocation(9, []AgentView{a})
		if len(v) == 0 {
			t.Errorf("%s: planted double allocation not caught", name)
			continue
		}
		if v[0].Checker != "double-allocation" || !strings.Contains(v[0].Detail, "index 9") {
			t.Errorf("%s: %v", name, v)
		}
	}
}

func TestOverlappingIgnoresScalars(t *testing.T) {
	if overlapping(resources.MustParse("cpus:1"), resources.MustParse("cpus:1")) {
		t.Fatal("scalars compared as items")
	}
	a := resources.MustParse("ports:[1-5]")
	b := resourcepb.Pools{"": resources.MustParse("ports:[5-9]")}.Total()
	if !overlapping(a, b) {
		t.Fatal("port 5 shared but not seen")
	}
}
