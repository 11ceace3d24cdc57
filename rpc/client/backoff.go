package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields exponentially growing waits between min and max, each
// scaled by a random factor in [0.5, 1] so that many clients that lost the
// same leader do not retry in lockstep. The Client uses one per call
// between rounds of attempts; the SDK and the agent use it between
// resubscriptions and resends. Not safe for concurrent use.
type Backoff struct {
	min, max time.Duration
	cur      time.Duration
	jitter   func() float64 // returns a value in [0, 1)
}

// NewBackoff returns a Backoff from min (DefaultMinBackoff when not
// positive) to max (at least min).
func NewBackoff(min, max time.Duration) *Backoff {
	if min <= 0 {
		min = DefaultMinBackoff
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max, jitter: rand.Float64}
}

// Next returns the wait before the next attempt and doubles the base.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	base := b.cur
	if b.cur < b.max {
		b.cur *= 2
		if b.cur > b.max || b.cur <= 0 {
			b.cur = b.max
		}
	}
	return max(b.min, time.Duration(float64(base)*(0.5+b.jitter()/2)))
}

// Reset starts the sequence again from min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends; it reports whether the full wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
