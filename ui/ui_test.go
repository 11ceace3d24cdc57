package ui_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/ui"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func wantPage(t *testing.T, h http.Handler, path string, status int, want ...string) string {
	t.Helper()
	code, body := get(t, h, path)
	if code != status {
		t.Fatalf("GET %s: status %d, want %d\n%s", path, code, status, body)
	}
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("GET %s: page lacks %q", path, s)
		}
	}
	return body
}

func TestPages(t *testing.T) {
	w := small(t)
	h := ui.New(w, nil)
	cases := []struct {
		path string
		want []string
	}{
		{"/ui/", []string{"master m1 (leader, term 2)", `id="masters"`, "<td>m2</td>", "no answer",
			`<b id="count-agents">3</b>`, `<b id="count-tasks">4</b>`, "DRAINING", "KILLED", `<b id="count-offers">1</b>`,
			`<b id="count-services">1</b>`, "<th>cpus</th>", "<th>mem</th>", `<a href="/ui/roles">web</a>`, `<a href="/ui/roles">batch</a>`}},
		{"/ui/agents", []string{`href="/ui/agents/a1"`, "DRAINING", "deadline 2026-12-04T13:00:00Z", "rack=r-a3", "cpus:8;disk:10000;mem:8192", "<td>cpus:1;mem:512</td><td>1</td><td>rack=r-a3</td>"}},
		{"/ui/agents?state=draining", []string{`data-id="a3"`}},
		{"/ui/agents/a2", []string{"resv-1", "vol-1", "pod=db-0", "web(cpus:1;disk:500;mem:512)"}},
		{"/ui/frameworks", []string{"name-fw-web", "alice", "bob", "DISCONNECTED", "50m0s", "CONNECTED"}},
		{"/ui/frameworks/fw-batch", []string{"failover time left: <span id=\"failover-left\">50m0s</span>", "REVOCABLE_RESOURCES", "/ui/frameworks/fw-batch/explain"}},
		{"/ui/tasks", []string{"web-0", "web-1", "PREEMPTED", "batch-0", "RUNNING", "STAGING"}},
		{"/ui/tasks?state=killed", []string{"web-1", "PREEMPTED"}},
		{"/ui/tasks?framework=fw-batch", []string{"batch-0"}},
		{"/ui/tasks?agent=a1&framework=fw-web", []string{"web-2"}},
		{"/ui/tasks/fw-web/web-0", []string{"hello from web-0", "could not fetch stderr", "sleep 3600"}},
		{"/ui/offers", []string{"fw-web", "cpus:1;mem:256", "9m0s ago"}},
		{"/ui/reservations", []string{"resv-1", "alice", "pod=db-0"}},
		{"/ui/reservations?kind=volumes", []string{"vol-1", "data", "200"}},
		{"/ui/roles", []string{`data-id="web"`, "cpus:2", `data-id="batch"`, "0.9", "<td>10</td>"}},
		{"/ui/services", []string{"kv", "IN_PROGRESS", "1 / 2"}},
		{"/ui/services/kv", []string{"kv-db-0", "127.0.0.1:31000", "not ready", "deploy kv-db-1"}},
		{"/ui/static/ui.css", []string{"--accent"}},
		{"/ui/static/ui.js", []string{"EventSource"}},
	}
	for _, c := range cases {
		wantPage(t, h, c.path, http.StatusOK, c.want...)
	}
	// Filters leave out what does not match.
	if body := wantPage(t, h, "/ui/tasks?state=killed", http.StatusOK); strings.Contains(body, `data-id="web-0"`) {
		t.Error("state filter kept a RUNNING task")
	}
	if body := wantPage(t, h, "/ui/agents?state=draining", http.StatusOK); strings.Contains(body, `data-id="a1"`) {
		t.Error("state filter kept an ACTIVE agent")
	}
}

func TestNotFoundAndBadInput(t *testing.T) {
	w := small(t)
	h := ui.New(w, nil)
	for _, path := range []string{
		"/ui/nope", "/ui/agents/zz", "/ui/frameworks/zz", "/ui/frameworks/zz/explain", "/ui/tasks/fw-web/zz",
		"/ui/tasks/zz/web-0", "/ui/services/zz", "/ui/tasks?framework=zz", "/ui/tasks?agent=zz", "/ui/agents?page=2",
		"/ui/agents/a1/x/y", "/ui/static/missing.css", "/ui/static/",
	} {
		code, body := get(t, h, path)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, code)
		}
		if !strings.HasPrefix(path, "/ui/static/") && !strings.Contains(body, `id="error-message"`) {
			t.Errorf("GET %s: not the 404 page:\n%s", path, body)
		}
	}
	for _, path := range []string{"/ui/agents?page=0", "/ui/agents?page=x", "/ui/tasks?state=sleeping", "/ui/agents?state=asleep", "/ui/reservations?kind=x"} {
		wantPage(t, h, path, http.StatusBadRequest, `id="error-message"`)
	}
	// A write method is not a page.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ui/agents", nil))
	if rec.Code == http.StatusOK {
		t.Errorf("POST /ui/agents: status %d", rec.Code)
	}
}

func TestPagination(t *testing.T) {
	w := newWorld(t)
	n := 2*ui.PageSize + 7
	for i := range n {
		w.agent(fmt.Sprintf("ag-%04d", i), "cpus:1;mem:1024", nil)
	}
	h := ui.New(w, nil)
	body := wantPage(t, h, "/ui/agents", http.StatusOK, "page 1 of 3", "ag-0000", `rel="next"`)
	if strings.Contains(body, fmt.Sprintf("ag-%04d", ui.PageSize)) || strings.Contains(body, `rel="prev"`) {
		t.Error("page 1 shows a row of page 2 or a previous link")
	}
	body = wantPage(t, h, "/ui/agents?page=3", http.StatusOK, "page 3 of 3", fmt.Sprintf("ag-%04d", n-1), `rel="prev"`,
		fmt.Sprintf("rows %d–%d of %d", 2*ui.PageSize+1, n, n))
	if strings.Contains(body, `rel="next"`) || strings.Contains(body, fmt.Sprintf("ag-%04d", 2*ui.PageSize-1)) {
		t.Error("last page shows a next link or a row of page 2")
	}
	wantPage(t, h, "/ui/agents?page=4", http.StatusNotFound, "page 4 does not exist")
}

func TestFollowerAndLeaderlessBanners(t *testing.T) {
	w := small(t)
	h := ui.New(w, nil)
	w.raftState, w.leaderID, w.leaderURL = "follower", "m2", "http://10.0.0.2:7100"
	wantPage(t, h, "/ui/", http.StatusOK, "follower of m2", `href="http://10.0.0.2:7100/ui/"`, fmt.Sprintf("index %d", w.f.State().Index()))
	// Explain needs the leader: the page links there.
	w.explainErr = connect.NewError(connect.CodeUnavailable, errors.New("not the leader"))
	wantPage(t, h, "/ui/frameworks/fw-web/explain", http.StatusOK, "not the leader", `href="http://10.0.0.2:7100/ui/frameworks/fw-web/explain"`)
	w.raftState, w.leaderID, w.leaderURL = "candidate", "", ""
	wantPage(t, h, "/ui/agents", http.StatusOK, "no leader known", "may be stale", `class="banner bad"`)
}

func TestExplainPage(t *testing.T) {
	w := small(t)
	h := ui.New(w, nil)
	w.explain = &agorav1.ExplainFrameworkResponse{FrameworkId: "fw-web", Roles: []string{"web"}, Offered: 1, RoundIndex: 42,
		RoundTime: timestamppb.New(t0),
		Reasons:   []*agorav1.SkipReason{{Reason: "agent_draining", Count: 1, ExampleAgent: "a3"}},
		Demands:   []*agorav1.DemandVerdict{{Role: "web", Resources: res("cpus:4"), Count: 2, Placed: 1, Unmet: 1, Reason: "unsatisfiable"}},
		Preemptions: []*agorav1.Preemption{{Id: "p1", FrameworkId: "fw-web", Role: "web", Priority: 10, AgentId: "a3",
			Victims: []*agorav1.TaskRef{{FrameworkId: "fw-batch", TaskId: "batch-0"}}}},
	}
	wantPage(t, h, "/ui/frameworks/fw-web/explain", http.StatusOK, "round at index 42", "agent_draining", `href="/ui/agents/a3"`,
		"unsatisfiable", "fw-batch/batch-0")
}

// A panicking Source is a 500 page, not a crash.
type panicky struct{ *world }

func (panicky) Services(*fsm.State) ([]ui.Service, error) { panic("boom") }

func TestPanicIsAnErrorPage(t *testing.T) {
	h := ui.New(panicky{small(t)}, nil)
	wantPage(t, h, "/ui/services", http.StatusInternalServerError, `id="error-message"`)
}

func TestEventsFollowTheState(t *testing.T) {
	w := small(t)
	srv := httptest.NewServer(ui.New(w, nil))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case lines <- d:
				case <-ctx.Done():
					return
				}
			}
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("event stream ended")
			}
			return l
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return ""
	}
	if got, want := next(), fmt.Sprintf("%d m1 leader-ready", w.f.State().Index()); got != want {
		t.Fatalf("first event %q, want %q", got, want)
	}
	w.agent("a9", "cpus:1;mem:1", nil)
	want := fmt.Sprintf("%d m1 leader-ready", w.f.State().Index())
	for got := next(); got != want; got = next() {
	}
	// Stopping the master ends the stream.
	close(w.done)
	for range lines {
	}
	if _, err := io.ReadAll(resp.Body); err != nil && ctx.Err() != nil {
		t.Fatal("stream did not end when the master stopped")
	}
}
