package framework

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff yields exponentially growing waits between min and max, each
// scaled by a random factor in [0.5, 1] so that many frameworks that lost the
// same leader do not reconnect in lockstep.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
	jitter   func() float64 // returns a value in [0, 1)
}

func newBackoff(min, max time.Duration) *backoff {
	if min <= 0 {
		min = DefaultMinBackoff
	}
	if max < min {
		max = min
	}
	return &backoff{min: min, max: max, jitter: rand.Float64}
}

// Next returns the wait before the next attempt and doubles the base.
func (b *backoff) Next() time.Duration {
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
	d := time.Duration(float64(base) * (0.5 + b.jitter()/2))
	if d < b.min {
		d = b.min
	}
	return d
}

// Reset starts the sequence again from min, after a success.
func (b *backoff) Reset() { b.cur = 0 }

// sleepCtx waits d or until ctx ends; it reports whether the full wait passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
