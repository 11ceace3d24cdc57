package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/agora-sched/agora/devcluster"
)

// cpuMeter reads the CPU time used so far by the processes of a benchmark
// run: the masters (their process_cpu_seconds_total metric), a child
// process (/proc, Linux) and this process.
type cpuMeter struct {
	masters []string // base URLs
	simPid  int      // 0: none
}

// cpuReading is one reading of a cpuMeter, in CPU seconds (user + system).
// A figure that could not be read is 0.
type cpuReading struct {
	masters   []float64
	sim, self float64
}

func (m cpuMeter) read(ctx context.Context) cpuReading {
	r := cpuReading{masters: make([]float64, len(m.masters)), self: devcluster.ProcessCPU().Seconds()}
	for i, u := range m.masters {
		r.masters[i], _ = masterCPUSeconds(ctx, u)
	}
	if m.simPid > 0 {
		if p, err := procfs.NewProc(m.simPid); err == nil {
			if st, err := p.Stat(); err == nil {
				r.sim = st.CPUTime()
			}
		}
	}
	return r
}

// masterCPUSeconds reads process_cpu_seconds_total from a master's
// /metrics (within 5 s).
func masterCPUSeconds(ctx context.Context, baseURL string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics of %s: %s", baseURL, resp.Status)
	}
	return metricValue(resp.Body, "process_cpu_seconds_total")
}

// metricValue is the value of the first sample of the metric family name
// in a Prometheus text exposition.
func metricValue(in io.Reader, name string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(in)
	if err != nil {
		return 0, fmt.Errorf("reading metrics: %w", err)
	}
	f, ok := families[name]
	if !ok || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("no %s sample", name)
	}
	m := f.GetMetric()[0]
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), nil
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), nil
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue(), nil
	}
	return 0, fmt.Errorf("%s is no counter or gauge", name)
}
