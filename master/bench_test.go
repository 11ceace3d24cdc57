package master_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/master"
)

// These benchmarks run whole clusters; run them once each:
//
//	go test -run '^$' -bench 'ReplicatedWrites|Failover' -benchtime 1x ./master/
//
// AGORA_BENCH_DIR puts the data on a chosen disk (default: the temp dir).

// BenchmarkReplicatedWrites compares SetRole through the Connect API on a
// 3-master cluster with bare raft.Apply and a no-op FSM (64 writers each).
func BenchmarkReplicatedWrites(b *testing.B) {
	for b.Loop() {
		res, err := devcluster.BenchWrites(context.Background(), devcluster.WriteBench{
			Writers: 64, Duration: 5 * time.Second, Dir: os.Getenv("AGORA_BENCH_DIR"), Logger: testLogger(),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Log(res)
		b.ReportMetric(res.AgoraPerSec, "agora-writes/s")
		b.ReportMetric(res.BarePerSec, "bare-writes/s")
		b.ReportMetric(res.Ratio, "ratio")
		// CPU per write (the whole process: client, masters, raft): on a
		// shared machine steadier than the rates.
		b.ReportMetric(float64(res.AgoraCPUPerWrite.Microseconds()), "agora-cpu-us/write")
		b.ReportMetric(float64(res.BareCPUPerWrite.Microseconds()), "bare-cpu-us/write")
	}
}

// BenchmarkFailover measures leader kill -> new leader accepting writes
// over 10 rounds, for agora and bare raft, with each Raft profile.
func BenchmarkFailover(b *testing.B) {
	for _, profile := range []string{master.RaftProfileDefault, master.RaftProfileFast} {
		b.Run(profile, func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				res, err := devcluster.BenchFailover(ctx, devcluster.FailoverBench{
					Rounds: 10, RaftProfile: profile, Dir: os.Getenv("AGORA_BENCH_DIR"), Logger: testLogger(),
				})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				b.Log(res)
				b.ReportMetric(float64(devcluster.Percentile(res.Agora, 50).Milliseconds()), "agora-p50-ms")
				b.ReportMetric(float64(devcluster.Percentile(res.Agora, 99).Milliseconds()), "agora-p99-ms")
				b.ReportMetric(float64(devcluster.Percentile(res.Bare, 50).Milliseconds()), "bare-p50-ms")
				b.ReportMetric(float64(devcluster.Percentile(res.Bare, 99).Milliseconds()), "bare-p99-ms")
			}
		})
	}
}
