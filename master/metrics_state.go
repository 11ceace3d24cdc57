package master

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
	"github.com/agora-sched/agora/service/scheduler"
)

// stateCollector computes the state-derived gauges at scrape time from one
// immutable snapshot of the replicated state (one walk per table; no lock
// is held, Apply goes on beside it). Every known state gets a series, zero
// included, so a dashboard's series exist before the first task.
type stateCollector struct {
	state func() *fsm.State

	tasks, agents, frameworks, offers, unacked, preemptions *prometheus.Desc
	podsDesired, podsRunning, podsReady, plan               *prometheus.Desc
}

// stateHelp ends the help of every state-derived gauge.
const stateHelp = " From this master's replicated state at scrape time (a follower's may lag)."

func newStateCollector(labels prometheus.Labels, state func() *fsm.State) *stateCollector {
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("agora_"+name, help+stateHelp, vars, labels)
	}
	return &stateCollector{
		state:       state,
		tasks:       d("tasks", "Tasks by state (terminal ones until they are forgotten).", "state"),
		agents:      d("agents", "Agents by state: active, draining, drained, restarting, unreachable, gone.", "state"),
		frameworks:  d("frameworks", "Frameworks by state: connected, disconnected (in failover), torn_down.", "state"),
		offers:      d("offers_outstanding", "Offers made and not yet accepted, declined, rescinded or expired."),
		unacked:     d("status_updates_unacknowledged", "Tasks whose latest status update waits for its framework's acknowledgement."),
		preemptions: d("preemptions_in_force", "Preemptions whose freed resources are still earmarked for the demanding framework."),
		podsDesired: d("service_pods_desired", "Pods a service's spec asks for.", "service"),
		podsRunning: d("service_pods_running", "Pods of a service whose task is RUNNING.", "service"),
		podsReady:   d("service_pods_ready", "Pods of a service that passed their readiness check.", "service"),
		plan:        d("service_plan", "1 for a service's current plan state (in_progress, complete, failed), 0 for the others.", "service", "state"),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.agents, c.frameworks, c.offers, c.unacked, c.preemptions,
		c.podsDesired, c.podsRunning, c.podsReady, c.plan} {
		ch <- d
	}
}

// enumLabel turns an enum value name into a label value:
// TASK_STATE_RUNNING -> running.
func enumLabel(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// enumCounts emits one gauge per value of an enum (UNSPECIFIED left out
// unless something has it).
func enumCounts[E ~int32](ch chan<- prometheus.Metric, d *prometheus.Desc, names map[int32]string, prefix string, counts map[E]int) {
	for v, name := range names {
		if v == 0 && counts[0] == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(counts[E(v)]), enumLabel(name, prefix))
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	n := st.Census()
	enumCounts(ch, c.tasks, agorav1.TaskState_name, "TASK_STATE_", n.Tasks)
	enumCounts(ch, c.agents, agorav1.AgentState_name, "AGENT_STATE_", n.Agents)
	enumCounts(ch, c.frameworks, agorav1.FrameworkState_name, "FRAMEWORK_STATE_", n.Frameworks)
	ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(n.Unacknowledged))
	ch <- prometheus.MustNewConstMetric(c.offers, prometheus.GaugeValue, float64(n.Offers))
	ch <- prometheus.MustNewConstMetric(c.preemptions, prometheus.GaugeValue, float64(n.Preemptions))
	if n.Frameworks[agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED]+n.Frameworks[agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED] > 0 {
		c.collectServices(ch, st, st.Frameworks())
	}
}

// serviceGauges are one service's figures.
type serviceGauges struct {
	desired, running, ready int
	plan                    string
}

// planStates are the plan label values, from service.PlanStatus.State.
var planStates = map[string]string{
	service.PlanInProgress: "in_progress",
	service.PlanComplete:   "complete",
	service.PlanFailed:     "failed",
}

// collectServices reads each live service's record (as ListServices does)
// and reports its pods and plan state. A record that does not decode is
// left out (ListServices reports it as an error).
func (c *stateCollector) collectServices(ch chan<- prometheus.Metric, st *fsm.State, fws []*agorav1.Framework) {
	services := map[string]serviceGauges{}
	for _, fw := range fws {
		name, ok := strings.CutPrefix(fw.GetInfo().GetName(), scheduler.FrameworkPrefix)
		if !ok || fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			continue
		}
		rec, ok := st.Record(fw.GetId(), scheduler.StateKey)
		if !ok {
			continue
		}
		var ss service.State
		if err := ss.UnmarshalBinary(rec.GetValue()); err != nil {
			continue
		}
		status := ss.Status()
		g := serviceGauges{desired: len(status.Pods), plan: planStates[status.Plan.State]}
		for _, p := range status.Pods {
			if p.State == "RUNNING" {
				g.running++
			}
			if p.Ready {
				g.ready++
			}
		}
		services[name] = g
	}
	names := make([]string, 0, len(services))
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := services[n]
		ch <- prometheus.MustNewConstMetric(c.podsDesired, prometheus.GaugeValue, float64(g.desired), n)
		ch <- prometheus.MustNewConstMetric(c.podsRunning, prometheus.GaugeValue, float64(g.running), n)
		ch <- prometheus.MustNewConstMetric(c.podsReady, prometheus.GaugeValue, float64(g.ready), n)
		for _, s := range planStates {
			v := 0.0
			if s == g.plan {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.plan, prometheus.GaugeValue, v, n, s)
		}
	}
}
