package ui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/ui"
)

// Bench sizes: the goal is the overview in < 200 ms at 10,000
// agents and 100,000 tasks, lists paginated.
const (
	benchAgents        = 10_000
	benchTasksPerAgent = 10
)

var (
	bigOnce  sync.Once
	bigWorld *world
)

// big builds the benchmark's state through FSM commands: two roles, two
// frameworks, 10,000 agents and 10 tasks on each (100,000), a third of
// them RUNNING, and 200 agents draining.
func big(b *testing.B) *world {
	bigOnce.Do(func() {
		w := small(b)
		agents := make([]string, benchAgents)
		for i := range agents {
			agents[i] = fmt.Sprintf("agent-%05d", i)
			w.agent(agents[i], "cpus:32;mem:131072;disk:1000000", map[string]string{"rack": fmt.Sprintf("r%d", i%40)})
		}
		for lo := 0; lo < len(agents); lo += 1000 {
			part := agents[lo : lo+1000]
			fid, role := "fw-web", "web"
			if lo%2000 != 0 {
				fid, role = "fw-batch2", "batch"
				if lo == 1000 {
					w.framework(fid, "carol", []string{"batch"})
				}
			}
			ids := w.offers(fid, role, "cpus:4;mem:8192", part, false)
			for j, a := range part {
				w.launch(fid, ids[j], a, "t-"+a, benchTasksPerAgent, "cpus:0.25;mem:512")
				if j%3 == 0 {
					for k := range benchTasksPerAgent {
						w.status(a, fid, fmt.Sprintf("t-%s-%d", a, k), 3 /* RUNNING */, "")
					}
				}
			}
		}
		bigWorld = w
	})
	return bigWorld
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRender(b *testing.B) {
	w := big(b)
	h := ui.New(w, nil)
	if n := len(w.f.State().Tasks()); n < benchAgents*benchTasksPerAgent {
		b.Fatalf("built %d tasks", n)
	}
	pages := []string{
		"/ui/",
		"/ui/agents",
		"/ui/agents?page=200",
		"/ui/agents/agent-05000",
		"/ui/frameworks",
		"/ui/frameworks/fw-web",
		"/ui/tasks",
		"/ui/tasks?page=2000",
		"/ui/tasks?state=running",
		"/ui/tasks?framework=fw-batch2&page=100",
		"/ui/tasks/fw-web/t-agent-00000-0",
		"/ui/offers",
		"/ui/reservations",
		"/ui/roles",
		"/ui/services",
	}
	for _, p := range pages {
		name := strings.NewReplacer("/ui/", "", "/", "_", "?", "_").Replace(p)
		if name == "" {
			name = "overview"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for range b.N {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s: %d\n%s", p, rec.Code, rec.Body.String())
				}
			}
			// Wall time on a shared machine counts other processes' load;
			// the process's CPU time per render does not.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
