package agent

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
