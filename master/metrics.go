package master

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gometricsprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/rpcmetrics"
)

// What /metrics serves, and which master counts what (docs/metrics.md
// lists every series):
//
//   - State-derived gauges (tasks, agents, frameworks by state, offers
//     outstanding, unacknowledged status updates, services) are computed
//     at scrape time from this master's replicated state (metrics_state.go):
//     every master reports them, a follower's view may lag the leader's.
//   - Outcome counters (offers by outcome, preemptions, drains, Raft apply
//     latency, allocation rounds) are counted by the leader, as it proposes
//     or applies; a follower's stay at what it counted while it led. Sum
//     them over masters for the cluster's total.
//   - RPC series count what this master's handlers served.
//   - Raft: this master's indexes and term; on the leader, each follower's
//     match index, commit lag and last contact (metrics_raft.go); leader
//     changes seen by this master. Raft's own metrics (go-metrics,
//     agora_raft_*) are process-wide.

// processRegistry holds what is global to the process: Go runtime and
// process metrics, and raft's metrics (raft reports through go-metrics'
// global sink, so masters sharing a process share them).
var (
	processOnce     sync.Once
	processRegistry = prometheus.NewRegistry()
)

func initProcessMetrics(log interface{ Warn(string, ...any) }) {
	processOnce.Do(func() {
		processRegistry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		sink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{Registerer: processRegistry})
		if err != nil {
			log.Warn("raft metrics are unavailable", "err", err)
			return
		}
		conf := gometrics.DefaultConfig("agora")
		conf.EnableHostname = false
		conf.EnableRuntimeMetrics = false
		if _, err := gometrics.NewGlobal(conf, sink); err != nil {
			log.Warn("raft metrics are unavailable", "err", err)
		}
	})
}

// Histogram buckets, in seconds.
var (
	applyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	roundBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// Offer outcomes, the outcome label of agora_offers_removed_total.
const (
	outcomeAccepted  = "accepted"
	outcomeDeclined  = "declined"
	outcomeRescinded = "rescinded"
	outcomeExpired   = "expired"
	// outcomeWithdrawn: the framework disconnected or was torn down.
	outcomeWithdrawn = "withdrawn"
)

// masterMetrics is one master's registry: live gauges, the state
// collector, the leader's counters and the RPC interceptor.
type masterMetrics struct {
	reg    *prometheus.Registry
	leader atomic.Bool
	rpc    *rpcmetrics.Interceptor

	applyDuration  *prometheus.HistogramVec
	roundDuration  prometheus.Histogram
	offersCreated  prometheus.Counter
	offersRemoved  *prometheus.CounterVec
	preemptions    prometheus.Counter
	preemptedTasks prometheus.Counter
	drains         *prometheus.CounterVec
	drainedTasks   prometheus.Counter
	leaderChanges  prometheus.Counter
	statusResends  prometheus.Counter
}

// newMasterMetrics builds m's metrics; called by New (the apply hook must
// exist before Raft replays its log). The gauges read m's Raft and gossip
// pool at scrape time, which only happens once Start has set them.
func newMasterMetrics(m *Master) *masterMetrics {
	initProcessMetrics(m.log)
	labels := prometheus.Labels{"master": m.cfg.ID}
	leaderCounts := " Counted by the leader; sum over masters for the cluster's total."
	mm := &masterMetrics{
		reg: prometheus.NewRegistry(),
		rpc: rpcmetrics.New(rpcmetrics.Server, labels),
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "agora", Name: "raft_apply_duration_seconds", ConstLabels: labels, Buckets: applyBuckets,
			Help: "Time from Master.Apply to the FSM's answer (dry run, Raft commit and apply), by command and Connect code (\"ok\" on success)." + leaderCounts,
		}, []string{"command", "code"}),
		roundDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agora", Name: "allocation_round_duration_seconds", ConstLabels: labels, Buckets: roundBuckets,
			Help: "Duration of an allocation round: snapshot, allocator and the commit of its OffersCreated command." + leaderCounts,
		}),
		offersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "offers_created_total", ConstLabels: labels,
			Help: "Offers committed by allocation rounds." + leaderCounts,
		}),
		offersRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agora", Name: "offers_removed_total", ConstLabels: labels,
			Help: "Offers that ended, by outcome: accepted, declined, rescinded, expired, withdrawn (the framework disconnected or was torn down)." + leaderCounts,
		}, []string{"outcome"}),
		preemptions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "preemptions_total", ConstLabels: labels,
			Help: "Preemption decisions committed (victims on one agent for one demanding framework each)." + leaderCounts,
		}),
		preemptedTasks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "preempted_tasks_total", ConstLabels: labels,
			Help: "Tasks asked to die by a preemption (KILLING with reason PREEMPTED)." + leaderCounts,
		}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agora", Name: "drains_total", ConstLabels: labels,
			Help: "Drain operations committed, by event: requested (DrainAgent, deadline changes included), deadline_passed, undrained." + leaderCounts,
		}, []string{"event"}),
		drainedTasks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "drained_tasks_total", ConstLabels: labels,
			Help: "Tasks killed because their agent's drain deadline passed (KILLING with reason DRAINED)." + leaderCounts,
		}),
		statusResends: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "status_resends_total", ConstLabels: labels,
			Help: "Task status updates sent again to a framework because it had not acknowledged them in time." + leaderCounts,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agora", Name: "raft_leader_changes_total", ConstLabels: labels,
			Help: "Leaders this master has seen take office (raft LeaderObservations naming a leader), since it started.",
		}),
	}
	for _, o := range []string{outcomeAccepted, outcomeDeclined, outcomeRescinded, outcomeExpired, outcomeWithdrawn} {
		mm.offersRemoved.WithLabelValues(o)
	}
	for _, e := range []string{"requested", "deadline_passed", "undrained"} {
		mm.drains.WithLabelValues(e)
	}
	gauge := func(name, help string, f func() float64) {
		mm.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "agora", Name: name, Help: help, ConstLabels: labels,
		}, f))
	}
	gauge("is_leader", "1 when this master is the Raft leader.", func() float64 {
		if mm.leader.Load() {
			return 1
		}
		return 0
	})
	gauge("raft_applied_index", "Last Raft index applied on this master.", func() float64 { return float64(m.raftIndex((*raft.Raft).AppliedIndex)) })
	gauge("raft_commit_index", "Last Raft index known committed on this master.", func() float64 { return float64(m.raftIndex((*raft.Raft).CommitIndex)) })
	gauge("raft_last_log_index", "Last Raft index in this master's log.", func() float64 { return float64(m.raftIndex((*raft.Raft).LastIndex)) })
	gauge("raft_term", "Current Raft term on this master.", func() float64 { return float64(m.raftIndex((*raft.Raft).CurrentTerm)) })
	gauge("fsm_index", "Index of the last command applied to the state machine.", func() float64 { return float64(m.fsm.State().Index()) })
	mm.reg.MustRegister(mm.rpc, mm.applyDuration, mm.roundDuration, mm.offersCreated, mm.offersRemoved,
		mm.preemptions, mm.preemptedTasks, mm.drains, mm.drainedTasks, mm.leaderChanges, mm.statusResends,
		newStateCollector(labels, m.fsm.State), &liveCollector{m: m, labels: labels})
	return mm
}

// raftIndex reads one of Raft's counters (0 before Start).
func (m *Master) raftIndex(f func(*raft.Raft) uint64) uint64 {
	if m.raft == nil {
		return 0
	}
	return f(m.raft)
}

func (mm *masterMetrics) setLeader(v bool) {
	if mm != nil {
		mm.leader.Store(v)
	}
}

func (mm *masterMetrics) handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{processRegistry, mm.reg}, promhttp.HandlerOpts{})
}

// observeApply records one Master.Apply on the leader: its latency by
// command and code, and the preemption and drain counters.
func (mm *masterMetrics) observeApply(t fsm.CommandType, start time.Time, err error) {
	code := rpcmetrics.Code(err)
	mm.applyDuration.WithLabelValues(t.String(), code).Observe(time.Since(start).Seconds())
	if err != nil {
		return
	}
	switch t {
	case fsm.CmdPreempt:
		mm.preemptions.Inc()
	case fsm.CmdDrainAgent:
		mm.drains.WithLabelValues("requested").Inc()
	case fsm.CmdDrainDeadline:
		mm.drains.WithLabelValues("deadline_passed").Inc()
	case fsm.CmdUndrainAgent:
		mm.drains.WithLabelValues("undrained").Inc()
	}
}

// resent counts a status update sent again (resendUnacked).
func (mm *masterMetrics) resent() {
	if mm != nil {
		mm.statusResends.Inc()
	}
}

// observeRound records one allocation round.
func (mm *masterMetrics) observeRound(d time.Duration) {
	mm.roundDuration.Observe(d.Seconds())
}

// onApply is the FSM apply hook: while this master leads it counts the
// outcomes the committed entry produced. It runs on Raft's FSM goroutine
// and only touches counters.
func (mm *masterMetrics) onApply(_ uint64, events []fsm.Event) {
	if !mm.leader.Load() {
		return
	}
	for _, ev := range events {
		switch ev.Kind {
		case fsm.EventOffersCreated:
			mm.offersCreated.Add(float64(len(ev.Offers)))
		case fsm.EventOfferRemoved:
			mm.offersRemoved.WithLabelValues(offerOutcome(ev.Reason)).Inc()
		case fsm.EventTaskStatus:
			if ev.Status.GetState() != agorav1.TaskState_TASK_STATE_KILLING {
				continue
			}
			switch ev.Status.GetReason() {
			case fsm.KillReasonPreempted:
				mm.preemptedTasks.Inc()
			case fsm.ReasonDrained:
				mm.drainedTasks.Inc()
			}
		}
	}
}

// offerOutcome maps the reason of an EventOfferRemoved to its outcome.
func offerOutcome(reason string) string {
	switch {
	case reason == "accepted":
		return outcomeAccepted
	case reason == "declined":
		return outcomeDeclined
	case reason == "expired":
		return outcomeExpired
	case strings.HasPrefix(reason, "rescinded"):
		return outcomeRescinded
	}
	return outcomeWithdrawn
}

// watchLeaders counts leader changes as Raft reports them, until the
// master stops.
func (m *Master) watchLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	m.raft.RegisterObserver(obs)
	defer m.raft.DeregisterObserver(obs)
	for {
		select {
		case <-m.quit:
			return
		case o := <-ch:
			if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
				m.metrics.leaderChanges.Inc()
			}
		}
	}
}
