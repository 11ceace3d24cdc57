package fsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// WriteSyntheticSnapshot writes a snapshot in the Persist format (records
// in key order) of a cluster at scale, for benchmarks: agents ACTIVE agents
// (cpus:64;mem:262144;disk:1000000;ports:[31000-32000]) and tasks RUNNING,
// acknowledged tasks of cpus:0.5;mem:512 spread round-robin over the
// agents, all of one framework "fw-1" in role "web". agents < 1 means one
// agent per 100 tasks. At most 128 tasks fit on an agent; more is an error.
// Restore or ReadState loads it.
func WriteSyntheticSnapshot(w io.Writer, agents, tasks int) error {
	if agents < 1 {
		agents = max(1, (tasks+99)/100)
	}
	if (tasks+agents-1)/agents > 128 {
		return fmt.Errorf("fsm: synthetic snapshot: %d tasks do not fit on %d agents (128 each)", tasks, agents)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var scratch []byte
	write := func(rec byte, m proto.Message) error {
		var err error
		scratch, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(scratch[:0], m)
		if err != nil {
			return fmt.Errorf("fsm: synthetic snapshot: %w", err)
		}
		var hdr [binary.MaxVarintLen64 + 1]byte
		n := binary.PutUvarint(hdr[:], uint64(len(scratch)+1))
		hdr[n] = rec
		if _, err := bw.Write(hdr[:n+1]); err != nil {
			return fmt.Errorf("fsm: synthetic snapshot: %w", err)
		}
		if _, err := bw.Write(scratch); err != nil {
			return fmt.Errorf("fsm: synthetic snapshot: %w", err)
		}
		return nil
	}
	head := binary.AppendUvarint([]byte(snapshotMagic), 1)
	bw.Write(binary.AppendUvarint(nil, uint64(len(head)+1)))
	bw.WriteByte(recHeader)
	bw.Write(head)
	now := &timestamppb.Timestamp{Seconds: 1700000000}
	agentRes := resourcepb.ToProto("", resources.MustParse("cpus:64;mem:262144;disk:1000000;ports:[31000-32000]"))
	for a := range agents {
		if err := write(recAgent, &agorav1.Agent{Id: SyntheticAgentID(a), Hostname: fmt.Sprintf("host-%05d", a),
			Address: fmt.Sprintf("10.%d.%d.%d:5051", a/65536%256, a/256%256, a%256), Resources: agentRes,
			State: agorav1.AgentState_AGENT_STATE_ACTIVE, RegisteredAt: now, StateSince: now}); err != nil {
			return err
		}
	}
	if err := write(recFramework, &agorav1.Framework{Id: "fw-1", State: agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED, RegisteredAt: now,
		Info: &agorav1.FrameworkInfo{Id: "fw-1", Name: "bench", Principal: "bench", Roles: []string{"web"}}}); err != nil {
		return err
	}
	taskRes := resourcepb.ToProto("", resources.MustParse("cpus:0.5;mem:512"))
	for t := range tasks {
		id := fmt.Sprintf("task-%07d", t)
		agent := SyntheticAgentID(t % agents)
		if err := write(recTask, &agorav1.Task{Id: id, FrameworkId: "fw-1", AgentId: agent, Name: id, Role: "web", Resources: taskRes,
			Command: &agorav1.CommandInfo{Value: "sleep 3600"}, State: agorav1.TaskState_TASK_STATE_RUNNING, Acknowledged: true, CreatedAt: now,
			Status: &agorav1.TaskStatus{TaskId: id, FrameworkId: "fw-1", AgentId: agent, State: agorav1.TaskState_TASK_STATE_RUNNING,
				Uuid: fmt.Sprintf("%08d-0000-5000-8000-000000000000", t), Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: now}}); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("fsm: synthetic snapshot: %w", err)
	}
	return nil
}

// SyntheticAgentID is the id of agent i in WriteSyntheticSnapshot.
func SyntheticAgentID(i int) string { return fmt.Sprintf("agent-%05d", i) }
