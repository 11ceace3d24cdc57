package master

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestLimitsDefaults(t *testing.T) {
	var l Limits
	l.setDefaults()
	if l.MaxRequestBytes != DefaultMaxRequestBytes || l.MaxOperationsPerAccept != DefaultMaxOperationsPerAccept ||
		l.CallRate != DefaultCallRate || l.SubscribeBurst != DefaultSubscribeBurst {
		t.Fatalf("defaults not applied: %+v", l)
	}
	none := Limits{MaxRequestBytes: -1, MaxOperationsPerAccept: -1, MaxLaunchesPerAccept: -1, MaxTasksPerFramework: -1,
		MaxFrameworksPerPrincipal: -1, SubscribeRate: -1, CallRate: -1}
	none.setDefaults()
	if got := none.acceptLimits(); got.GetMaxOperations() != 0 || got.GetMaxLaunches() != 0 || got.GetMaxFrameworkTasks() != 0 {
		t.Fatalf("negative limits must stamp as none, got %v", got)
	}
	if none.readMaxBytes() != 0 {
		t.Fatalf("negative request limit must read as none, got %d", none.readMaxBytes())
	}
	if newRateLimiter("x", none.CallRate, none.CallBurst) != nil {
		t.Fatal("a negative rate must mean no limiter")
	}
	if stamp(1<<40) != ^uint32(0) {
		t.Fatalf("stamp must saturate, got %d", stamp(1<<40))
	}
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRateLimiter("scheduler calls", 2, 3) // 2/s, bursts of 3
	for i := range 3 {
		if err := r.allow("alice", now); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	err := r.allow("alice", now)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("call past the burst: %v, want resource_exhausted", err)
	}
	for _, want := range []string{`"alice"`, "2 scheduler calls per second", "burst 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %s", err, want)
		}
	}
	if err := r.allow("bob", now); err != nil {
		t.Fatalf("another principal has its own bucket: %v", err)
	}
	if err := r.allow("alice", now.Add(500*time.Millisecond)); err != nil {
		t.Fatalf("one token refills in 500ms at 2/s: %v", err)
	}
	if err := r.allow("alice", now.Add(500*time.Millisecond)); err == nil {
		t.Fatal("only one token had refilled")
	}
}

func TestRateLimiterForgetsIdlePrincipals(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRateLimiter("calls", 1, 1)
	for i := range maxLimiterKeys {
		_ = r.allow(fmt.Sprint("p", i), now)
	}
	if err := r.allow("p0", now); err == nil {
		t.Fatal("p0 spent its only token")
	}
	// Much later every bucket is full again: a new principal evicts them.
	later := now.Add(time.Hour)
	if err := r.allow("newcomer", later); err != nil {
		t.Fatal(err)
	}
	if n := len(r.keys); n != 1 {
		t.Fatalf("%d principals kept after eviction, want 1", n)
	}
	// When nobody is idle the map is reset rather than grown.
	for i := range maxLimiterKeys {
		_ = r.allow(fmt.Sprint("q", i), later)
	}
	if n := len(r.keys); n > maxLimiterKeys {
		t.Fatalf("%d principals kept, bound is %d", n, maxLimiterKeys)
	}
}

func TestAcceptShape(t *testing.T) {
	res := func(n int) []*agorav1.Resource {
		out := make([]*agorav1.Resource, n)
		for i := range out {
			out[i] = &agorav1.Resource{Name: fmt.Sprint("r", i), Scalar: 1}
		}
		return out
	}
	labels := func(n int) map[string]string {
		out := map[string]string{}
		for i := range n {
			out[fmt.Sprint(i)] = "v"
		}
		return out
	}
	cases := []struct {
		name string
		op   *agorav1.Operation
		ok   bool
	}{
		{"resources at the bound", &agorav1.Operation{Resources: res(maxResourcesPerItem)}, true},
		{"resources past the bound", &agorav1.Operation{Resources: res(maxResourcesPerItem + 1)}, false},
		{"task resources past the bound", &agorav1.Operation{Tasks: []*agorav1.TaskInfo{{Resources: res(maxResourcesPerItem + 1)}}}, false},
		{"volumes past the bound", &agorav1.Operation{Volumes: make([]*agorav1.VolumeInfo, maxVolumesPerOperation+1)}, false},
		{"labels at the bound", &agorav1.Operation{Labels: labels(maxLabels)}, true},
		{"labels past the bound", &agorav1.Operation{Labels: labels(maxLabels + 1)}, false},
		{"a long label", &agorav1.Operation{Labels: map[string]string{"k": strings.Repeat("v", maxLabelBytes+1)}}, false},
	}
	for _, c := range cases {
		err := checkAcceptShape([]*agorav1.Operation{c.op})
		if c.ok != (err == nil) || (err != nil && connect.CodeOf(err) != connect.CodeInvalidArgument) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := checkInfoShape(&agorav1.FrameworkInfo{Roles: make([]string, maxRolesPerFramework+1)}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("roles past the bound: %v", err)
	}
}

func TestRejectionMessageIsCut(t *testing.T) {
	long := strings.Repeat("é", maxErrorMessage) // 2 bytes each: the cut lands mid-rune
	msg := truncate(long)
	if len(msg) > maxErrorMessage+40 || !strings.Contains(msg, "bytes cut") {
		t.Fatalf("cut message is %d bytes: %q...", len(msg), msg[:40])
	}
	if !strings.HasPrefix(msg, strings.Repeat("é", maxErrorMessage/2)) {
		t.Fatal("the cut split a rune or dropped the start")
	}
	if truncate("short") != "short" {
		t.Fatal("a short message must stay as it is")
	}
}

func TestRateLimiterChargesTheAuthenticatedPrincipal(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRateLimiter("calls", 1, 1)
	alice := auth.NewContext(context.Background(), auth.Identity{Principal: "alice", Via: "token"})
	if err := r.charge(alice, "declared-bob", now); err != nil {
		t.Fatal(err)
	}
	if err := r.charge(alice, "declared-carol", now); err == nil {
		t.Fatal("alice's second call is hers whatever principal she declares")
	}
	if err := r.charge(context.Background(), "", now); err != nil {
		t.Fatalf("anonymous has its own bucket: %v", err)
	}
	if err := r.charge(context.Background(), "", now); err == nil || !strings.Contains(err.Error(), `"anonymous"`) {
		t.Fatalf("anonymous past its burst: %v", err)
	}
	svc := auth.NewContext(context.Background(), auth.Identity{Principal: InternalPrincipal, Via: "internal"})
	for range 3 {
		if err := r.charge(svc, "", now); err != nil {
			t.Fatalf("a master's own clients are not rate limited: %v", err)
		}
	}
}

// BenchmarkRateLimiterCharge is the cost the call-rate limit adds to every
// framework call (one principal; 1000 principals).
func BenchmarkRateLimiterCharge(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprint("principals=", n), func(b *testing.B) {
			r := newRateLimiter("calls", 1e9, 1<<30)
			ctx := context.Background()
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprint("p", i)
			}
			now := time.Unix(1000, 0)
			b.ResetTimer()
			for i := range b.N {
				if err := r.charge(ctx, names[i%n], now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
