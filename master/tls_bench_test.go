package master_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
)

// BenchmarkReplicatedWritesTLS runs BenchmarkReplicatedWrites' measurement
// with TLS off and on, in one run:
//
//	go test -run '^$' -bench ReplicatedWritesTLS -benchtime 1x ./master/
func BenchmarkReplicatedWritesTLS(b *testing.B) {
	for _, mode := range []struct {
		name string
		tls  bool
	}{{"tls=off", false}, {"tls=on", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				res, err := devcluster.BenchWrites(context.Background(), devcluster.WriteBench{
					Writers: 64, Duration: 5 * time.Second, Dir: os.Getenv("AGORA_BENCH_DIR"), Logger: testLogger(), TLS: mode.tls,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Log(res)
				b.ReportMetric(res.AgoraPerSec, "agora-writes/s")
				b.ReportMetric(res.DirectPerSec, "apply-writes/s")
				b.ReportMetric(res.BarePerSec, "bare-writes/s")
			}
		})
	}
}
