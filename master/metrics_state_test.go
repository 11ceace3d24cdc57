package master

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/service"
	"github.com/agora-sched/agora/service/scheduler"
)

// gatherValues gathers c and returns name -> "label=value,..." -> value
// (gauges and counters).
func gatherValues(t testing.TB, cs ...prometheus.Collector) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		reg.MustRegister(c)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		out[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "master" {
					parts = append(parts, l.GetName()+"="+l.GetValue())
				}
			}
			out[mf.GetName()][strings.Join(parts, ",")] = metricValue(m)
		}
	}
	return out
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return float64(m.GetHistogram().GetSampleCount())
}

// applyAll applies commands to a new FSM, failing on any rejection.
func applyAll(t testing.TB, f *fsm.FSM, cmds ...any) {
	t.Helper()
	for i := 0; i < len(cmds); i += 2 {
		res, err := f.ApplyMessage(f.State().Index()+1, cmds[i].(fsm.CommandType), cmds[i+1].(proto.Message))
		if err != nil || res.Err != nil {
			t.Fatalf("%v: %v %v", cmds[i], err, res.Err)
		}
	}
}

const metricsSpec = `{"name":"%s","role":"kv","pods":[{"name":"kv","count":%d,
 "resources":{"cpus":0.5,"mem":256},"command":"run"}]}`

func serviceRecord(t *testing.T, name string, count int) []byte {
	t.Helper()
	spec, err := service.Parse(fmt.Appendf(nil, metricsSpec, name, count))
	if err != nil {
		t.Fatal(err)
	}
	b, err := service.New(spec, "1").MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStateCollector checks the state-derived gauges against a state
// built by commands: every known state has a series, and the services'
// pods and plans are read from their records.
func TestStateCollector(t *testing.T) {
	f := fsm.New(fsm.Config{})
	now := &timestamppb.Timestamp{Seconds: 1_700_000_000}
	sub := func(id, name string) *agorav1.SubscribeFrameworkCommand {
		return &agorav1.SubscribeFrameworkCommand{Now: now, Framework: &agorav1.Framework{Id: id, StreamToken: "s-" + id,
			Info: &agorav1.FrameworkInfo{Name: name, Principal: name, Roles: []string{"kv"}}}}
	}
	put := func(fid, name string, count int) *agorav1.PutRecordCommand {
		return &agorav1.PutRecordCommand{FrameworkId: fid, StreamToken: "s-" + fid, Key: scheduler.StateKey, Value: serviceRecord(t, name, count)}
	}
	applyAll(t, f,
		fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: now, Agent: &agorav1.Agent{Id: "a1", Hostname: "a1", Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:4096"))}},
		fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: now, Agent: &agorav1.Agent{Id: "a2", Hostname: "a2", Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:4096"))}},
		fsm.CmdDrainAgent, &agorav1.DrainAgentCommand{Now: now, AgentId: "a2"},
		fsm.CmdSubscribeFramework, sub("f-web", scheduler.FrameworkPrefix+"web"),
		fsm.CmdPutRecord, put("f-web", "web", 3),
		fsm.CmdSubscribeFramework, sub("f-idle", scheduler.FrameworkPrefix+"idle"),
		fsm.CmdPutRecord, put("f-idle", "idle", 0),
		fsm.CmdSubscribeFramework, sub("f-plain", "plain"),
		fsm.CmdFrameworkDisconnected, &agorav1.FrameworkDisconnectedCommand{Now: now, FrameworkId: "f-plain", StreamToken: "s-f-plain"},
	)
	got := gatherValues(t, newStateCollector(prometheus.Labels{"master": "m1"}, f.State))
	want := map[string]map[string]float64{
		"agora_agents":               {"state=active": 1, "state=draining": 0, "state=drained": 1, "state=unreachable": 0, "state=gone": 0, "state=restarting": 0},
		"agora_frameworks":           {"state=connected": 2, "state=disconnected": 1, "state=torn_down": 0},
		"agora_service_pods_desired": {"service=web": 3, "service=idle": 0},
		"agora_service_pods_running": {"service=web": 0, "service=idle": 0},
		"agora_service_plan": {"service=web,state=in_progress": 1, "service=web,state=complete": 0, "service=web,state=failed": 0,
			"service=idle,state=in_progress": 0, "service=idle,state=complete": 1, "service=idle,state=failed": 0},
		"agora_offers_outstanding":            {"": 0},
		"agora_status_updates_unacknowledged": {"": 0},
	}
	for name, series := range want {
		for labels, v := range series {
			g, ok := got[name][labels]
			if !ok || g != v {
				t.Errorf("%s{%s} = %v (present %v), want %v", name, labels, g, ok, v)
			}
		}
	}
	if n := len(got["agora_tasks"]); n != len(agorav1.TaskState_name)-1 {
		t.Errorf("agora_tasks has %d series, want one per task state: %v", n, got["agora_tasks"])
	}
}

// TestOfferOutcomes maps every reason the FSM gives a removed offer.
func TestOfferOutcomes(t *testing.T) {
	for reason, want := range map[string]string{
		"accepted": outcomeAccepted, "declined": outcomeDeclined, "expired": outcomeExpired,
		"rescinded": outcomeRescinded, "rescinded: agent draining": outcomeRescinded,
		"framework disconnected": outcomeWithdrawn, "framework torn down": outcomeWithdrawn,
	} {
		if got := offerOutcome(reason); got != want {
			t.Errorf("%q -> %s, want %s", reason, got, want)
		}
	}
}

// TestOutcomesCountOnTheLeaderOnly: the apply hook counts while the
// master leads, and not while it follows.
func TestOutcomesCountOnTheLeaderOnly(t *testing.T) {
	m, err := New(Config{ID: "m1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:1", GossipAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	events := []fsm.Event{
		{Kind: fsm.EventOfferRemoved, Reason: "declined"},
		{Kind: fsm.EventOfferRemoved, Reason: "rescinded: agent draining"},
		{Kind: fsm.EventOffersCreated, Offers: []*agorav1.Offer{{Id: "o1"}, {Id: "o2"}}},
		{Kind: fsm.EventTaskStatus, Status: &agorav1.TaskStatus{State: agorav1.TaskState_TASK_STATE_KILLING, Reason: fsm.KillReasonPreempted}},
		{Kind: fsm.EventTaskStatus, Status: &agorav1.TaskStatus{State: agorav1.TaskState_TASK_STATE_KILLED, Reason: fsm.KillReasonPreempted}},
		{Kind: fsm.EventTaskStatus, Status: &agorav1.TaskStatus{State: agorav1.TaskState_TASK_STATE_KILLING, Reason: fsm.ReasonDrained}},
	}
	mm := m.metrics
	mm.onApply(1, events) // a follower: nothing counted
	mm.setLeader(true)
	mm.onApply(2, events)
	got := gatherValues(t, mm.offersRemoved, mm.offersCreated, mm.preemptedTasks, mm.drainedTasks)
	for name, series := range map[string]map[string]float64{
		"agora_offers_removed_total":  {"outcome=declined": 1, "outcome=rescinded": 1, "outcome=accepted": 0, "outcome=expired": 0, "outcome=withdrawn": 0},
		"agora_offers_created_total":  {"": 2},
		"agora_preempted_tasks_total": {"": 1},
		"agora_drained_tasks_total":   {"": 1},
	} {
		for labels, v := range series {
			if g, ok := got[name][labels]; !ok || g != v {
				t.Errorf("%s{%s} = %v (present %v), want %v", name, labels, g, ok, v)
			}
		}
	}
}

// BenchmarkMetricsScrape times a whole /metrics scrape (the handler,
// text format) of a master's registry over a state of 10,000 agents and
// 100,000 tasks built through FSM commands (preemptBenchState; seconds to
// build, once). Run it:
//
//	go test -run '^$' -bench MetricsScrape -benchtime 20x ./master/
func BenchmarkMetricsScrape(b *testing.B) {
	const agents = 10_000
	preemptBench.once.Do(func() { preemptBench.st, preemptBench.err = preemptBenchState(agents, 10) })
	st, err := preemptBench.st, preemptBench.err
	if err != nil {
		b.Fatal(err)
	}
	if n := len(st.Tasks()); n != 10*agents {
		b.Fatalf("state has %d tasks", n)
	}
	initProcessMetrics(slog.New(slog.DiscardHandler))
	labels := prometheus.Labels{"master": "bench"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStateCollector(labels, func() *fsm.State { return st }))
	h := promhttp.HandlerFor(prometheus.Gatherers{processRegistry, reg}, promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	var size int
	b.Run(fmt.Sprintf("agents=%d/tasks=%d", agents, 10*agents), func(b *testing.B) {
		cpu0 := processCPU()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("scrape: %d %s", rec.Code, rec.Body.String())
			}
			size = rec.Body.Len()
		}
		b.ReportMetric(float64(size), "bytes/scrape")
		// CPU time per scrape (this process, GC included): on a shared,
		// oversubscribed machine wall time mostly measures the wait for a
		// core.
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	})
	body := scrapeOnce(h)
	if !strings.Contains(body, `agora_tasks{master="bench",state="staging"} 100000`) || !strings.Contains(body, `agora_agents{master="bench",state="active"} 10000`) {
		b.Fatalf("scrape lacks the state's counts:\n%s", body)
	}
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func scrapeOnce(h http.Handler) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
