package clusterbench

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// progress writes one line per step to w (nil discards them).
type progress struct {
	w     io.Writer
	name  string
	start time.Time
}

func newProgress(w io.Writer, name string) *progress {
	return &progress{w: w, name: name, start: time.Now()}
}

func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	fmt.Fprintf(p.w, "bench %s [%6.1fs] %s\n", p.name, time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// percentileMs returns the p-th percentile (0..100, nearest rank) of ds in
// milliseconds, 0 for none.
func percentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return float64(s[min(max(i, 0), len(s)-1)].Microseconds()) / 1000
}

// ms converts durations to milliseconds for JSON.
func ms(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d.Microseconds()) / 1000
	}
	return out
}
