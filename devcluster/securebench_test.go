package devcluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
)

// BenchmarkSecurityCost measures replicated writes and freed-to-offers
// latency with security off and on (TLS, gossip key, authentication,
// ACLs), alternating off/on three times in one run: on a shared machine
// the spread between runs of the same side is larger than the cost, so
// compare the medians of the sides:
//
//	go test -run '^$' -bench SecurityCost -benchtime 1x ./devcluster/
func BenchmarkSecurityCost(b *testing.B) {
	for _, mode := range []struct {
		name   string
		secure bool
	}{{"secure=off", false}, {"secure=on", true}, {"secure=off#2", false}, {"secure=on#2", true}, {"secure=off#3", false}, {"secure=on#3", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				res, err := devcluster.BenchSecure(context.Background(), devcluster.SecureBench{
					Secure: mode.secure, Writers: 64, Duration: 3 * time.Second, Rounds: 20, Dir: os.Getenv("AGORA_BENCH_DIR"),
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Log(res)
				b.ReportMetric(res.WritesPerSec, "writes/s")
				b.ReportMetric(float64(devcluster.Percentile(res.Freed, 50).Microseconds())/1000, "freed-p50-ms")
				b.ReportMetric(float64(devcluster.Percentile(res.Freed, 99).Microseconds())/1000, "freed-p99-ms")
			}
		})
	}
}
