package clusterbench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/rpc/client"
)

// WriteOptions configures Write.
type WriteOptions struct {
	// Writers and Duration as in devcluster.WriteBench (defaults 64, 5s).
	Writers  int
	Duration time.Duration
	// RaftProfile for both sides (default "default").
	RaftProfile string
	// Dir is where both clusters keep their data; "" = temp.
	Dir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// Warmup as in devcluster.WriteBench (default 1s, negative none).
	Warmup time.Duration
	// Conns spreads the Connect writers over this many client
	// connections (devcluster.WriteBench.Conns); default 1.
	Conns int
	// WritesInFlight is devcluster.WriteBench.WritesInFlight: SetRole
	// RPCs each client keeps in flight before it carries further
	// concurrent calls together (0: the client's default, -1: never).
	WritesInFlight int
	// ConnectProfile, optional, receives a CPU profile of the Connect
	// phase (go tool pprof -http :8080 FILE for the flame graph).
	ConnectProfile io.Writer
}

// batchingNote is WriteResult.Batching.
const batchingNote = "agora: the leader batches concurrent writes into one log entry; bare raft: one entry per write"

// clientBatchingNote is WriteResult.ClientBatching when clients carry
// concurrent calls together.
const clientBatchingNote = "Connect client: while %d SetRole RPCs of a client are in flight, its further concurrent SetRole calls go out together in one SetRoles RPC; each call is still judged, committed on a quorum and answered on its own (its own index or error)"

// WriteResult is `agora bench write --json`.
type WriteResult struct {
	AgoraWritesPerSec float64 `json:"agora_writes_per_sec"`
	ApplyWritesPerSec float64 `json:"apply_writes_per_sec"`
	RaftWritesPerSec  float64 `json:"raft_writes_per_sec"`
	// Ratio is agora (Connect) over bare raft.
	Ratio float64 `json:"ratio"`
	// AgoraLogEntries and ApplyLogEntries count the Raft entries the
	// leader appended in the Connect and Master.Apply phases: agora's
	// leader batches concurrent writes into one entry (fsm.CmdBatch), so
	// writes per entry is above 1. Bare raft is one entry per write, always
	// (the anchor).
	AgoraLogEntries uint64 `json:"agora_log_entries"`
	ApplyLogEntries uint64 `json:"apply_log_entries"`
	// Batching says how the agora side writes: "leader batches concurrent
	// writes into one log entry; bare raft: one entry per write".
	Batching string `json:"batching"`
	// ClientBatching says how the Connect writers' client sends their
	// calls: carried together in SetRoles RPCs while WritesInFlight RPCs
	// are in flight (rpc/client.WithWritesInFlight), or one RPC per call.
	ClientBatching string `json:"client_batching"`
	// WritesInFlight is the clients' setting (-1: every call its own RPC).
	WritesInFlight int `json:"client_writes_in_flight"`
	// AgoraRPCs counts the RPCs the Connect writers' calls took (SetRole
	// and SetRoles): below the writes when calls were carried together.
	AgoraRPCs uint64 `json:"agora_rpcs"`
	// AgoraCPUUsPerWrite, ApplyCPUUsPerWrite and RaftCPUUsPerWrite are
	// the bench process's CPU time (user + system, client and all three
	// masters) per write in each phase, in microseconds: on a shared
	// machine, where each phase's rate depends on the CPU it got, the
	// steadier comparison.
	AgoraCPUUsPerWrite float64 `json:"agora_cpu_us_per_write"`
	ApplyCPUUsPerWrite float64 `json:"apply_cpu_us_per_write"`
	RaftCPUUsPerWrite  float64 `json:"raft_cpu_us_per_write"`
	// Errors counts failed agora writes (must be 0); RaftErrors failed
	// bare raft writes (must be 0). Neither counts as a write.
	Errors     int64 `json:"errors"`
	RaftErrors int64 `json:"raft_errors"`
	// FirstError is the first failed write's error ("" when none).
	FirstError string  `json:"first_error,omitempty"`
	Writers    int     `json:"writers"`
	Conns      int     `json:"conns"`
	Seconds    float64 `json:"seconds_per_side"`
	Profile    string  `json:"raft_profile"`
}

// Write measures replicated writes on a 3-master loopback cluster through
// the Connect API and through Master.Apply, then bare hashicorp/raft with
// agora's storage and transport on the same disk (devcluster.BenchWrites).
// The two sides do not write the same log: agora's leader coalesces
// concurrent writes into batch entries (as it would in production), bare
// raft appends one entry per write; the result counts agora's entries.
func Write(ctx context.Context, o WriteOptions) (WriteResult, error) {
	if o.Writers <= 0 {
		o.Writers = 64
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.RaftProfile == "" {
		o.RaftProfile = "default"
	}
	p := newProgress(o.Progress, "write")
	p.printf("%d writers, %v per side: Connect API, then Master.Apply, then bare raft (about %v)", o.Writers, o.Duration, 3*o.Duration+5*time.Second)
	r, err := devcluster.BenchWrites(ctx, devcluster.WriteBench{Writers: o.Writers, Duration: o.Duration, Dir: o.Dir, RaftProfile: o.RaftProfile, ConnectProfile: o.ConnectProfile, Conns: o.Conns, WritesInFlight: o.WritesInFlight, Warmup: o.Warmup})
	if err != nil {
		return WriteResult{}, fmt.Errorf("clusterbench: write: %w", err)
	}
	p.printf("%s", r)
	inFlight := o.WritesInFlight
	if inFlight == 0 {
		inFlight = client.DefaultWritesInFlight
	}
	clientNote := "Connect client: one RPC per SetRole call"
	if inFlight > 0 {
		clientNote = fmt.Sprintf(clientBatchingNote, inFlight)
	} else {
		inFlight = -1
	}
	return WriteResult{ClientBatching: clientNote, WritesInFlight: inFlight, AgoraRPCs: r.AgoraRPCs, AgoraWritesPerSec: r.AgoraPerSec, ApplyWritesPerSec: r.DirectPerSec, RaftWritesPerSec: r.BarePerSec,
		Ratio: r.Ratio, AgoraLogEntries: r.AgoraEntries, ApplyLogEntries: r.DirectEntries,
		AgoraCPUUsPerWrite: us(r.AgoraCPUPerWrite), ApplyCPUUsPerWrite: us(r.DirectCPUPerWrite), RaftCPUUsPerWrite: us(r.BareCPUPerWrite), Batching: batchingNote, Errors: r.AgoraErrors, RaftErrors: r.BareErrors, FirstError: r.FirstError, Writers: o.Writers, Conns: max(o.Conns, 1), Seconds: o.Duration.Seconds(), Profile: o.RaftProfile}, nil
}

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
