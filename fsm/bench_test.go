package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
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

// syntheticSnapshot writes a snapshot with tasks tasks spread 100 per agent
// over one framework, in the Persist format (records in key order).
func syntheticSnapshot(tasks int) []byte {
	var buf bytes.Buffer
	write := func(rec byte, m proto.Message) {
		body, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		var hdr [binary.MaxVarintLen64 + 1]byte
		n := binary.PutUvarint(hdr[:], uint64(len(body)+1))
		hdr[n] = rec
		buf.Write(hdr[:n+1])
		buf.Write(body)
	}
	head := binary.AppendUvarint([]byte(snapshotMagic), 1)
	buf.Write(binary.AppendUvarint(nil, uint64(len(head)+1)))
	buf.WriteByte(recHeader)
	buf.Write(head)
	agents := (tasks + 99) / 100
	now := &timestamppb.Timestamp{Seconds: 1700000000}
	agentRes := resourcepb.ToProto("", resources.MustParse("cpus:64;mem:262144;disk:1000000;ports:[31000-32000]"))
	for a := range agents {
		write(recAgent, &agorav1.Agent{Id: fmt.Sprintf("agent-%05d", a), Hostname: fmt.Sprintf("host-%05d", a),
			Address: fmt.Sprintf("10.0.%d.%d:5051", a/256, a%256), Resources: agentRes, State: agorav1.AgentState_AGENT_STATE_ACTIVE,
			RegisteredAt: now, StateSince: now})
	}
	write(recFramework, &agorav1.Framework{Id: "fw-1", State: agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED, RegisteredAt: now,
		Info: &agorav1.FrameworkInfo{Id: "fw-1", Name: "bench", Principal: "bench", Roles: []string{"web"}}})
	taskRes := resourcepb.ToProto("", resources.MustParse("cpus:0.5;mem:512"))
	for t := range tasks {
		id := fmt.Sprintf("task-%07d", t)
		agent := fmt.Sprintf("agent-%05d", t%agents)
		write(recTask, &agorav1.Task{Id: id, FrameworkId: "fw-1", AgentId: agent, Name: id, Role: "web", Resources: taskRes,
			Command: &agorav1.CommandInfo{Value: "sleep 3600"}, State: agorav1.TaskState_TASK_STATE_RUNNING, Acknowledged: true, CreatedAt: now,
			Status: &agorav1.TaskStatus{TaskId: id, FrameworkId: "fw-1", AgentId: agent, State: agorav1.TaskState_TASK_STATE_RUNNING,
				Uuid: fmt.Sprintf("%08d-0000-5000-8000-000000000000", t), Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: now}})
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
