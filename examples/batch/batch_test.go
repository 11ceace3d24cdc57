package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework/frameworktest"
)

func TestCountIsDeterministic(t *testing.T) {
	for u := range 5 {
		a, b := Count(u, 3000), Count(u, 3000)
		if a != b {
			t.Fatalf("unit %d: %d then %d", u, a, b)
		}
		// About 5% of the lines are ERROR lines.
		if a < 60 || a > 240 {
			t.Fatalf("unit %d: %d ERROR lines of 3000", u, a)
		}
	}
	if Count(0, 3000) == Count(1, 3000) && Count(1, 3000) == Count(2, 3000) {
		t.Fatal("every unit has the same count: the seed does not depend on the unit")
	}
	if got, want := Expected(3, 100), Count(0, 100)+Count(1, 100)+Count(2, 100); got != want {
		t.Fatalf("Expected = %d, want %d", got, want)
	}
}

func TestRunUnitReportsAndNeedsAnOK(t *testing.T) {
	var mu sync.Mutex
	var got []Report
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep Report
		_ = json.NewDecoder(r.Body).Decode(&rep)
		mu.Lock()
		got = append(got, rep)
		code := status
		mu.Unlock()
		w.WriteHeader(code)
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := RunUnit(ctx, UnitConfig{Unit: 7, Lines: 500, ReportURL: srv.URL, TaskID: "unit-7-1"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Unit != 7 || got[0].Count != Count(7, 500) || got[0].Task != "unit-7-1" {
		t.Fatalf("reports %+v", got)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if err := RunUnit(ctx, UnitConfig{Unit: 7, Lines: 500, ReportURL: srv.URL}); err == nil {
		t.Fatal("a unit whose report was not taken succeeded")
	}
	if err := RunUnit(ctx, UnitConfig{Unit: -1, Lines: 500, ReportURL: srv.URL}); err == nil {
		t.Fatal("a unit without an index succeeded")
	}
}

func TestServeReportRejectsBadReports(t *testing.T) {
	j, err := New(Config{Units: 3, Lines: 10, Command: func(int, int, string, time.Duration) string { return "true" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{`, `{"unit":3,"count":1}`, `{"unit":-1,"count":1}`, `{"unit":0,"count":-5}`} {
		rec := httptest.NewRecorder()
		j.serveReport(rec, httptest.NewRequest(http.MethodPost, "/report", strings.NewReader(body)))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("report %s: %d, want 400", body, rec.Code)
		}
	}
	// Before the framework subscribed nothing can be recorded: 503, so
	// the task fails and its unit runs again.
	rec := httptest.NewRecorder()
	j.serveReport(rec, httptest.NewRequest(http.MethodPost, "/report", strings.NewReader(`{"unit":0,"count":1}`)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("report before subscription: %d, want 503", rec.Code)
	}
	if p := j.Progress(); p.Done != 0 {
		t.Fatalf("progress %+v after rejected reports", p)
	}
}

// --- end to end ----------------------------------------------------------------

func buildAgora(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "agora")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/agora-sched/agora/cmd/agora").CombinedOutput(); err != nil {
		t.Fatalf("build agora: %v\n%s", err, out)
	}
	return bin
}

func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("%s: not within %s", what, d)
		case <-tick.C:
		}
	}
}

// TestJobEndToEnd runs a job on 3 masters and 2 agents with the built
// binary's tasks; unit tasks are SIGKILLed, the leader master is killed,
// and the job process is stopped and restarted with its framework id. It
// must still end with the exact answer.
func TestJobEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds the agora binary and runs a cluster")
	}
	bin := buildAgora(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: "cpus:2;mem:2048"}); err != nil {
			t.Fatal(err)
		}
	}
	const units, lines = 40, 2000
	var out frameworktest.SyncBuffer
	cfg := Config{
		Masters: c.Addrs(), Units: units, Lines: lines, Work: 300 * time.Millisecond, Revocable: true, Out: &out, Logger: logger,
		Command: func(unit, lines int, url string, work time.Duration) string {
			return fmt.Sprintf("exec %s batch unit --unit %d --lines %d --report %s --work %s", bin, unit, lines, url, work)
		},
	}

	// First run: stopped once 10 units are recorded.
	j1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(ctx)
	done1 := make(chan error, 1)
	go func() { _, err := j1.Run(ctx1); done1 <- err }()
	t0 := time.Now()
	poll(t, 60*time.Second, "10 units recorded", func() bool { return j1.Progress().Done >= 10 })
	t.Logf("10 units recorded after %s", time.Since(t0).Round(time.Millisecond))
	stop1()
	if err := <-done1; err == nil {
		t.Fatal("the stopped job reported success")
	}
	fid := j1.result().FrameworkID
	t.Cleanup(func() { // agents leave task processes running
		for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + fid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	recorded := j1.Progress().Done

	// Second run, same framework id: it finds the recorded units.
	cfg.FrameworkID = fid
	j2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		res Result
		err error
	}
	done2 := make(chan outcome, 1)
	go func() { res, err := j2.Run(ctx); done2 <- outcome{res, err} }()
	poll(t, 60*time.Second, "recorded units found again", func() bool { return j2.Progress().Done >= recorded })

	// Kill unit tasks of this run (their units run again; the first
	// run's leftovers are not its tasks), then the leader master.
	killed := 0
	poll(t, 60*time.Second, "unit tasks of the second run killed", func() bool {
		for _, id := range j2.runningTasks() {
			for _, pid := range devcluster.PIDsWithEnv("AGORA_TASK_ID=" + id) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
			}
		}
		return killed >= 3
	})
	t.Logf("%d unit task processes killed after %s", killed, time.Since(t0).Round(time.Millisecond))
	c.Kill(c.LeaderIndex())

	var o outcome
	select {
	case o = <-done2:
	case <-ctx.Done():
		t.Fatalf("job not done: %+v\n%s", j2.Progress(), out.String())
	}
	if o.err != nil {
		t.Fatalf("job: %v\n%s", o.err, out.String())
	}
	want := Expected(units, lines)
	if o.res.Units != units || o.res.Total != want {
		t.Fatalf("job answered %d over %d units, want %d over %d\n%s", o.res.Total, o.res.Units, want, units, out.String())
	}
	if o.res.Reruns == 0 {
		t.Fatalf("no unit ran again after %d task kills\n%s", killed, out.String())
	}
	t.Logf("job done after %s", time.Since(t0).Round(time.Millisecond))
	t.Logf("exact answer %d; %d recorded before the restart, %d task kills, %d reruns, %d launches in the second run",
		o.res.Total, recorded, killed, o.res.Reruns, o.res.Launched)
}
