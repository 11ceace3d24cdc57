package fsm

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// seededSnapshot is the snapshot of the seed log's state.
func seededSnapshot(t tb) []byte {
	h := newHarness(t)
	for i, e := range seedLog(t) {
		h.f.ApplyCommand(uint64(i+1), e)
	}
	return snapshotBytes(t, h.f.State())
}

// FuzzRestore: restoring any byte stream never panics, nor does auditing
// what it restored; a stream that restores yields a state whose snapshot
// restores to the same bytes (a follower that installs a leader's
// snapshot, or a master that restarts from its own, reaches the same
// state). Restore checks the encoding, not the invariants: a snapshot our
// FSM wrote keeps them (FuzzApply), and raft's snapshot store checks a
// CRC before a snapshot reaches Restore; auditing a large state on every
// restart would cost what the restore itself costs.
func FuzzRestore(f *testing.F) {
	snap := seededSnapshot(f)
	f.Add(snap)
	f.Add(snap[:len(snap)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		g := New(Config{})
		if err := g.Restore(nopCloser{bytes.NewReader(b)}); err != nil {
			return
		}
		_ = g.State().CheckInvariants() // must not panic on any restored state
		again := snapshotBytes(t, g.State())
		h := New(Config{})
		if err := h.Restore(nopCloser{bytes.NewReader(again)}); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if !bytes.Equal(snapshotBytes(t, h.State()), again) {
			t.Fatal("snapshot of a restored state does not round-trip")
		}
	})
}

// FuzzAccept: any Accept command (an arbitrary protobuf payload: offers,
// operations, resources, volumes, task infos) against the seeded state of
// two agents, two frameworks, offers, a reservation and a volume never
// panics, keeps the invariants and changes nothing when rejected (the
// harness checks both): the accept-operation validation is the FSM's
// alone, so this exercises the one judge of LAUNCH, LAUNCH_GROUP,
// RESERVE, UNRESERVE, CREATE and DESTROY.
func FuzzAccept(f *testing.F) {
	log := seedLog(f)
	seeds := []*agorav1.AcceptCommand{
		mustParse[*agorav1.AcceptCommand](f, `framework_id: "f1" offer_ids: ["o3"] now: {seconds: 6}
			operations: {type: OPERATION_TYPE_LAUNCH tasks: {task_id: "t9" @resources(cpus:0.5) command: {value: "x"}}}`),
		mustParse[*agorav1.AcceptCommand](f, `framework_id: "f1" offer_ids: ["o3"] now: {seconds: 6}
			operations: {type: OPERATION_TYPE_LAUNCH tasks: {task_id: "t9" @resources(cpus:0.5) command: {value: "x"} volume_ids: ["v1"]}}`),
		mustParse[*agorav1.AcceptCommand](f, `framework_id: "f1" offer_ids: ["o3"] now: {seconds: 6}
			operations: {type: OPERATION_TYPE_DESTROY volumes: {id: "v1"}}`),
		mustParse[*agorav1.AcceptCommand](f, `framework_id: "f2" offer_ids: ["o2"] now: {seconds: 6}
			operations: {type: OPERATION_TYPE_RESERVE @resources[web](cpus:1)}`),
		mustParse[*agorav1.AcceptCommand](f, `framework_id: "f2" offer_ids: ["o2", "o2"] now: {seconds: 6}
			operations: {type: OPERATION_TYPE_LAUNCH_GROUP tasks: {task_id: "g1" @resources(cpus:1) command: {value: "x"}} tasks: {task_id: "g1" @resources(cpus:1) command: {value: "x"}}}`),
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m agorav1.AcceptCommand
		if err := proto.Unmarshal(b, &m); err != nil {
			return
		}
		h := newHarness(t)
		for i, e := range log {
			h.f.ApplyCommand(uint64(i+1), e)
		}
		h.index = uint64(len(log))
		h.apply(CmdAccept, &m) // invariants, and no change on rejection
	})
}
