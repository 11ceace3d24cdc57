package framework

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/framework/frameworktest"
	"github.com/agora-sched/agora/rpc/client"
)

// subscribeLog is an HTTP transport that records the master every
// Subscribe request is sent to, in order, refused connections included.
type subscribeLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	to   []string // "http://host:port" of each Subscribe request
}

func (s *subscribeLog) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/Subscribe") {
		s.mu.Lock()
		s.to = append(s.to, req.URL.Scheme+"://"+req.URL.Host)
		s.mu.Unlock()
	}
	return s.next.RoundTrip(req)
}

// since returns how many Subscribe requests from the i-th on went to each
// master.
func (s *subscribeLog) since(i int) (n int, per map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	per = map[string]int{}
	for _, u := range s.to[i:] {
		per[u]++
	}
	return len(s.to), per
}

func (s *subscribeLog) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.to)
}

// Two leader kills in a row (issue 13). In the first, the survivors keep
// naming the dead leader until their election; in the second, the leader
// elected then dies too. The followers that answered during the first
// election must not be passed over as if they had not answered: the SDK
// then stayed on the second dead leader, its connections refused, until
// the survivor's pass-over ran out (10 s), although the survivor led.
func TestRunSecondFailoverDoesNotStayOnDeadLeader(t *testing.T) {
	ctx := testCtx(t)
	a, b, c := frameworktest.NewMaster(), frameworktest.NewMaster(), frameworktest.NewMaster()
	defer b.Close()
	defer c.Close()
	a.SetID("m1")
	b.SetID("m2")
	c.SetID("m3")
	b.SetLeader(false, "m1", a.URL())
	c.SetLeader(false, "m1", a.URL())
	hc := client.DefaultHTTPClient()
	log := &subscribeLog{next: hc.Transport}
	hc.Transport = log
	rec := &recorder{}
	_, _ = startRun(t, Config{Masters: []string{a.URL(), b.URL(), c.URL()}, HTTPClient: hc}, rec)
	if err := a.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=false")

	// First kill: a dies, b and c still name it (their heartbeat timeout
	// has not run out) until the SDK has asked each of them.
	mark := log.len()
	a.Close()
	if err := waitUntil(ctx, func() bool {
		_, per := log.since(mark)
		return per[b.URL()] > 0 && per[c.URL()] > 0
	}); err != nil {
		t.Fatalf("the SDK did not ask both survivors after the first kill: %v", err)
	}
	// b is elected; c names it.
	b.SetLeader(true, "", "")
	c.SetLeader(false, "m2", b.URL())
	if err := b.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rec.waitLine(t, "subscribed fw-1 resubscribed=true")

	// Second kill: b dies, c is elected. The SDK may try the dead b once
	// (its stream just broke, the connection is refused) and must then go
	// to c, which answered during the first election.
	mark = log.len()
	b.Close()
	c.SetLeader(true, "", "")
	if err := c.WaitSubscriptions(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, per := log.since(mark)
	if per[b.URL()] > 1 {
		t.Fatalf("after the second kill the SDK sent %d subscriptions to the dead leader before the survivor that leads; want at most 1 (all: %v)", per[b.URL()], per)
	}
}

// waitUntil polls cond every 5 ms until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) error {
	for !cond() {
		if !client.Sleep(ctx, 5*time.Millisecond) {
			return fmt.Errorf("condition not met: %w", ctx.Err())
		}
	}
	return nil
}
