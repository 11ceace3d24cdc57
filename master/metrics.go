package master

import (
	"net/http"
	"sync"
	"sync/atomic"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gometricsprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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

// masterMetrics are one master's own gauges, read live at scrape time.
type masterMetrics struct {
	reg    *prometheus.Registry
	leader atomic.Bool
}

func newMasterMetrics(m *Master) *masterMetrics {
	initProcessMetrics(m.log)
	mm := &masterMetrics{reg: prometheus.NewRegistry()}
	labels := prometheus.Labels{"master": m.cfg.ID}
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
	gauge("raft_applied_index", "Last Raft index applied on this master.", func() float64 { return float64(m.raft.AppliedIndex()) })
	gauge("raft_commit_index", "Last Raft index known committed on this master.", func() float64 { return float64(m.raft.CommitIndex()) })
	gauge("raft_term", "Current Raft term on this master.", func() float64 { return float64(m.raft.CurrentTerm()) })
	gauge("fsm_index", "Index of the last command applied to the state machine.", func() float64 { return float64(m.fsm.State().Index()) })
	gauge("agents", "Registered agents.", func() float64 { return float64(len(m.fsm.State().Agents())) })
	gauge("frameworks", "Registered frameworks.", func() float64 { return float64(len(m.fsm.State().Frameworks())) })
	gauge("offers", "Outstanding offers.", func() float64 { return float64(len(m.fsm.State().Offers())) })
	return mm
}

func (mm *masterMetrics) setLeader(v bool) {
	if mm != nil {
		mm.leader.Store(v)
	}
}

func (mm *masterMetrics) handler() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{processRegistry, mm.reg}, promhttp.HandlerOpts{})
}
