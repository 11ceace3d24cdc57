package client

import (
	"testing"
	"time"
)

func TestBackoffGrowsCapsAndResets(t *testing.T) {
	for _, jitter := range []float64{0, 0.5, 0.999} {
		b := NewBackoff(100*time.Millisecond, time.Second)
		b.jitter = func() float64 { return jitter }
		var got []time.Duration
		for range 8 {
			got = append(got, b.Next())
		}
		base := 100 * time.Millisecond
		for i, d := range got {
			lo := max(time.Duration(float64(base)*0.5), 100*time.Millisecond)
			if d < lo || d > base {
				t.Fatalf("jitter %v: wait %d = %v, want in [%v, %v] (all %v)", jitter, i, d, lo, base, got)
			}
			if base < time.Second {
				base = min(2*base, time.Second)
			}
		}
		b.Reset()
		if d := b.Next(); d > 100*time.Millisecond {
			t.Fatalf("after Reset: %v, want <= 100ms", d)
		}
	}
}

func TestBackoffDefaults(t *testing.T) {
	b := NewBackoff(0, 0)
	if b.min != DefaultMinBackoff || b.max != DefaultMinBackoff {
		t.Fatalf("min %v max %v", b.min, b.max)
	}
	b = NewBackoff(time.Millisecond, time.Hour)
	for range 100 { // doubling must not overflow
		if d := b.Next(); d <= 0 || d > time.Hour {
			t.Fatalf("wait %v out of range", d)
		}
	}
}
