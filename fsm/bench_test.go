package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

func benchApply(b *testing.B, entries [][]byte) {
	f := New(Config{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if res := f.ApplyCommand(uint64(i+1), entries[i%len(entries)]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

func BenchmarkApplySetRole(b *testing.B) {
	var entries [][]byte
	for i := range 1024 {
		e, _ := Encode(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: fmt.Sprintf("role-%d", i), Weight: 2,
			Guarantee: resourcepb.ToProto("", resources.MustParse("cpus:2;mem:1024"))}})
		entries = append(entries, e)
	}
	benchApply(b, entries)
}

func BenchmarkApplyUpsertMaster(b *testing.B) {
	var entries [][]byte
	for i := range 5 {
		e, _ := Encode(CmdUpsertMaster, &agorav1.UpsertMasterCommand{Master: &agorav1.Master{Id: fmt.Sprintf("m%d", i),
			RaftAddress: "10.0.0.1:7200", HttpAddress: "10.0.0.1:7100", GossipAddress: "10.0.0.1:7300", Suffrage: "voter"}})
		entries = append(entries, e)
	}
	benchApply(b, entries)
}

// syntheticSnapshot is WriteSyntheticSnapshot with one agent per 100 tasks.
func syntheticSnapshot(tasks int) []byte {
	var buf bytes.Buffer
	if err := WriteSyntheticSnapshot(&buf, 0, tasks); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func BenchmarkApplyStatusUpdate100kTasks(b *testing.B) {
	const tasks = 100_000
	f := New(Config{})
	if err := f.Restore(nopCloser{bytes.NewReader(syntheticSnapshot(tasks))}); err != nil {
		b.Fatal(err)
	}
	agents := (tasks + 99) / 100
	// Two rounds over 4096 tasks with different uuids, so that cycling
	// through the entries never replays a task's latest uuid (a no-op).
	entries := make([][]byte, 8192)
	for i := range entries {
		t := ((i % 4096) * 7919) % tasks
		e, _ := Encode(CmdStatusUpdate, &agorav1.StatusUpdateCommand{AgentId: fmt.Sprintf("agent-%05d", t%agents),
			Now: &timestamppb.Timestamp{Seconds: int64(1700000000 + i)},
			Statuses: []*agorav1.TaskStatus{{TaskId: fmt.Sprintf("task-%07d", t), FrameworkId: "fw-1",
				State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: fmt.Sprintf("bench-%d", i), Healthy: i < 4096}}})
		entries[i] = e
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if res := f.ApplyCommand(uint64(i+2), entries[i%len(entries)]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	b.StopTimer()
	if t, _ := f.State().Task("fw-1", "task-0000000"); !strings.HasPrefix(t.GetStatus().GetUuid(), "bench-") {
		b.Fatal("status not applied")
	}
}

// BenchmarkSnapshotRestore persists a state with N tasks and restores it;
// one op is one Persist plus one ReadState. Run it once:
//
//	go test ./fsm -run XXX -bench SnapshotRestore -benchtime 1x
func BenchmarkSnapshotRestore(b *testing.B) {
	for _, tasks := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("tasks=%d", tasks), func(b *testing.B) {
			f := New(Config{})
			if err := f.Restore(nopCloser{bytes.NewReader(syntheticSnapshot(tasks))}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var size int
			for range b.N {
				var out bytes.Buffer
				if err := f.State().Persist(&out); err != nil {
					b.Fatal(err)
				}
				size = out.Len()
				s, err := ReadState(&out)
				if err != nil {
					b.Fatal(err)
				}
				if len(s.TasksByAgent("agent-00000")) != 100 {
					b.Fatal("restored state lost tasks")
				}
			}
			b.ReportMetric(float64(size), "snapshot-bytes")
		})
	}
}

func BenchmarkPersist(b *testing.B) {
	f := New(Config{})
	if err := f.Restore(nopCloser{bytes.NewReader(syntheticSnapshot(100_000))}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var out bytes.Buffer
		if err := f.State().Persist(&out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore measures ReadState alone on a persisted state:
//
//	go test ./fsm -run XXX -bench 'Restore/tasks=1000000' -benchtime 1x
func BenchmarkRestore(b *testing.B) {
	for _, tasks := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("tasks=%d", tasks), func(b *testing.B) {
			s, err := ReadState(bytes.NewReader(syntheticSnapshot(tasks)))
			if err != nil {
				b.Fatal(err)
			}
			var snap bytes.Buffer
			if err := s.Persist(&snap); err != nil {
				b.Fatal(err)
			}
			s = nil
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s, err := ReadState(bytes.NewReader(snap.Bytes()))
				if err != nil {
					b.Fatal(err)
				}
				if len(s.TasksByAgent("agent-00000")) != 100 {
					b.Fatal("restored state lost tasks")
				}
			}
		})
	}
}
