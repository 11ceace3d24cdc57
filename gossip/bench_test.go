package gossip

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkFailureDetection measures, for each round, the time from a
// member stopping abruptly (Shutdown without Leave, as after SIGKILL) to
// EventFailed being read at every other member. Each iteration is one
// round; a fresh member replaces the victim (untimed) so the pool keeps its
// size. Reported: p50/p99 over all (round, observer) pairs and the mean time
// until the last observer knew. Run with e.g. -benchtime=10x for stable
// percentiles; a LAN round at 50 members takes ~10 s.
func BenchmarkFailureDetection(b *testing.B) {
	for _, profile := range []Profile{ProfileLocal, ProfileLAN} {
		for _, size := range []int{3, 50} {
			b.Run(fmt.Sprintf("%s/%d", profile, size), func(b *testing.B) {
				benchFailure(b, profile, size)
			})
		}
	}
}

func benchFailure(b *testing.B, profile Profile, size int) {
	nodes := startPool(b, fmt.Sprintf("bf-%s-%d", profile, size), size, profile)
	var samples []time.Duration
	var lastSum time.Duration
	b.ResetTimer()
	for i := range b.N {
		victimIdx := 1 + i%(size-1)
		victim := nodes[victimIdx]
		name := victim.LocalMember().Name
		killed := time.Now()
		victim.stop()
		var observers []*node
		for j, n := range nodes {
			if j != victimIdx {
				observers = append(observers, n)
			}
		}
		waitForEvery(b, 120*time.Second, 20*time.Millisecond, "failure seen by every member", func() bool {
			for _, n := range observers {
				if _, ok := n.rec.find(EventFailed, name, killed); !ok {
					return false
				}
			}
			return true
		})
		var last time.Duration
		for _, n := range observers {
			e, _ := n.rec.find(EventFailed, name, killed)
			samples = append(samples, e.at.Sub(killed))
			last = max(last, e.at.Sub(killed))
		}
		lastSum += last

		b.StopTimer()
		fresh := startNode(b, fmt.Sprintf("%s-r%d", name, i), "127.0.0.1:0", profile, Tags{Role: RoleAgent})
		if _, err := fresh.Join([]string{nodes[0].Addr(), nodes[victimIdx-1].Addr()}); err != nil {
			b.Fatal(err)
		}
		nodes[victimIdx] = fresh
		waitForEvery(b, 120*time.Second, 50*time.Millisecond, "replacement seen", func() bool {
			for _, n := range nodes {
				if alive(n.Members()) != size {
					return false
				}
			}
			return true
		})
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, samples)
	b.ReportMetric(float64(lastSum.Milliseconds())/float64(b.N), "last-ms")
}

// BenchmarkJoinPropagation measures the time from a new member joining one
// member of a 100-member local-profile pool to EventJoin at every member.
func BenchmarkJoinPropagation(b *testing.B) {
	const size = 100
	nodes := startPool(b, "bj", size, ProfileLocal)
	var samples []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("bj-new-%d", i)
		joined := time.Now()
		n := startNode(b, name, "127.0.0.1:0", ProfileLocal, Tags{Role: RoleAgent})
		if _, err := n.Join([]string{nodes[i%size].Addr()}); err != nil {
			b.Fatal(err)
		}
		waitForEvery(b, 60*time.Second, 5*time.Millisecond, "join seen by all", func() bool {
			for _, o := range nodes {
				if _, ok := o.rec.find(EventJoin, name, joined); !ok {
					return false
				}
			}
			return true
		})
		var last time.Duration
		for _, o := range nodes {
			e, _ := o.rec.find(EventJoin, name, joined)
			last = max(last, e.at.Sub(joined))
		}
		samples = append(samples, last)
		b.StopTimer()
		n.stop() // keep the pool at its size; the departure is not measured
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, samples)
}

func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		i := int(q * float64(len(samples)-1))
		return float64(samples[i].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
