package agent

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type agentMetrics struct {
	reg           *prometheus.Registry
	registrations prometheus.Counter
	launched      prometheus.Counter
	sent          prometheus.Counter
	dropped       prometheus.Counter
}

func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{
		reg: prometheus.NewRegistry(),
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
	m.reg.MustRegister(m.registrations, m.launched, m.sent, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_agent_status_updates_pending", Help: "Status updates waiting in the outbox.",
		}, func() float64 { return float64(a.out.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "agora_agent_tasks_running", Help: "Tasks the executor runs.",
		}, func() float64 {
			if a.exec == nil {
				return 0
			}
			return float64(len(a.exec.Running()))
		}),
	)
	return m
}

// httpHandler serves /health (JSON) and /metrics (Prometheus).
func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id":              a.cfg.ID,
			"registered":      a.registered.Load(),
			"pending_updates": a.out.Len(),
			"running_tasks":   len(a.exec.Running()),
			"masters":         a.masterAddrs(),
		})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /sandbox/{framework}/{task}/{stream}", a.sandboxTail)
	return mux
}
