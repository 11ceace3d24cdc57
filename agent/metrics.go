package agent

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/rpcmetrics"
)

// agentMetrics is the agent's registry, served at /metrics (see
// docs/metrics.md). Its calls to the masters are counted by rpc, a client
// interceptor: registrations are agora_rpc_client_requests_total
// {method="RegisterAgent"}, assignment polls {method="GetAssignments"},
// status deliveries {method="UpdateStatus"}, each attempt by code.
type agentMetrics struct {
	reg           *prometheus.Registry
	rpc           *rpcmetrics.Interceptor
	registrations prometheus.Counter
	launched      prometheus.Counter
	sent          prometheus.Counter
	dropped       prometheus.Counter
}

// liveTaskStates are the states an agent reports its tasks in; a task
// that ends leaves the agent's books once its final update is queued.
var liveTaskStates = []agorav1.TaskState{
	agorav1.TaskState_TASK_STATE_STAGING, agorav1.TaskState_TASK_STATE_STARTING,
	agorav1.TaskState_TASK_STATE_RUNNING, agorav1.TaskState_TASK_STATE_KILLING,
}

func newAgentMetrics(a *Agent, rpc *rpcmetrics.Interceptor) *agentMetrics {
	m := &agentMetrics{
		reg: prometheus.NewRegistry(),
		rpc: rpc,
		registrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agora_agent_registrations_total", Help: "Registrations committed by the masters.",
		}),
		launched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agora_agent_tasks_launched_total", Help: "Tasks launched by this agent.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agora_agent_status_updates_committed_total", Help: "Status updates committed by the masters.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agora_agent_status_updates_refused_total", Help: "Status updates the masters refused for good (unknown task, wrong agent).",
		}),
	}
	m.reg.MustRegister(m.registrations, m.launched, m.sent, m.dropped, rpc, &agentTasksCollector{a: a},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_agent_status_updates_pending", Help: "Status updates waiting in the outbox for a master to commit them.",
		}, func() float64 { return float64(a.out.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_agent_tasks_running", Help: "Task processes the executor runs.",
		}, func() float64 {
			if a.exec == nil {
				return 0
			}
			return float64(len(a.exec.Running()))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_agent_registered", Help: "1 once a registration of this agent has been committed since it started.",
		}, func() float64 {
			if a.registered.Load() {
				return 1
			}
			return 0
		}),
	)
	return m
}

// agentTasksCollector reports the agent's live tasks by their latest
// state, as the agent last reported them.
type agentTasksCollector struct{ a *Agent }

var agentTasksDesc = prometheus.NewDesc("agora_agent_tasks",
	"Live tasks on this agent by the state it last reported (staging, starting, running, killing).", []string{"state"}, nil)

// Describe implements prometheus.Collector.
func (c *agentTasksCollector) Describe(ch chan<- *prometheus.Desc) { ch <- agentTasksDesc }

// Collect implements prometheus.Collector.
func (c *agentTasksCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[agorav1.TaskState]int{}
	c.a.mu.Lock()
	for _, st := range c.a.latest {
		counts[st.GetState()]++
	}
	c.a.mu.Unlock()
	for _, s := range liveTaskStates {
		ch <- prometheus.MustNewConstMetric(agentTasksDesc, prometheus.GaugeValue, float64(counts[s]), stateLabel(s))
		delete(counts, s)
	}
	for s, n := range counts {
		if !fsm.IsTerminal(s) {
			ch <- prometheus.MustNewConstMetric(agentTasksDesc, prometheus.GaugeValue, float64(n), stateLabel(s))
		}
	}
}

// stateLabel is a task state as a label value: TASK_STATE_RUNNING -> running.
func stateLabel(s agorav1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}
