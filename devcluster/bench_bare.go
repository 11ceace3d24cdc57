package devcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/fsm"
)

// BareFailover is the bare-raft half of BenchFailover on its own: a
// 3-node hashicorp/raft cluster with agora's config (profile), storage and
// transport and a no-op FSM, in this process; rounds times it shuts the
// leader down and measures until a survivor commits a write, restarting
// the stopped node between rounds. dir as in WriteBench.Dir.
func BareFailover(ctx context.Context, rounds int, profile, dir string) ([]time.Duration, error) {
	d, cleanup, err := benchDir(dir, "agora-bench-bare-failover-")
	if err != nil {
		return nil, fmt.Errorf("devcluster: bench dir: %w", err)
	}
	defer cleanup()
	bc, err := startBare(ctx, filepath.Join(d, "bare"), profile, quiet(nil))
	if err != nil {
		return nil, err
	}
	defer bc.stop()
	payload := []byte{byte(fsm.CmdSetRole)}
	var out []time.Duration
	for range max(rounds, 1) {
		li, err := bc.waitLeader(ctx)
		if err != nil {
			return out, err
		}
		t0 := time.Now()
		bc.kill(li)
		err = pollUntil(ctx, "bare raft write after a leader kill", func() bool {
			for i, nd := range bc.nodes {
				if i != li && nd.alive && nd.r.State() == raft.Leader && nd.r.Apply(payload, 2*time.Second).Error() == nil {
					return true
				}
			}
			return false
		})
		if err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
		if err := bc.restart(li); err != nil {
			return out, err
		}
		if err := bc.waitCaughtUp(ctx); err != nil {
			return out, err
		}
	}
	return out, nil
}
