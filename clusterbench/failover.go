package clusterbench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// FailoverOptions configures Failover.
type FailoverOptions struct {
	// Binary is the agora binary the masters and the agent run (required).
	Binary string
	// Rounds of leader kills; default 5.
	Rounds int
	// RaftProfile: "default" or "fast" (both sides).
	RaftProfile string
	// Dir holds node data and logs; "" = temp (removed).
	Dir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// FailoverResult is `agora bench failover --json`. Times run from the
// SIGKILL of the leader.
type FailoverResult struct {
	Rounds  int    `json:"rounds"`
	Profile string `json:"raft_profile"`
	// Leader*: a write committed through a surviving master.
	LeaderP50Ms float64 `json:"leader_p50_ms"`
	LeaderP99Ms float64 `json:"leader_p99_ms"`
	// Offers*: the framework's first OFFERS event after the kill.
	OffersP50Ms float64 `json:"offers_p50_ms"`
	OffersP99Ms float64 `json:"offers_p99_ms"`
	// Accept*: an offer made before the kill accepted (a task launched).
	AcceptP50Ms float64 `json:"accept_p50_ms"`
	AcceptP99Ms float64 `json:"accept_p99_ms"`
	// OldOfferAccepted counts rounds whose pre-kill offer was accepted.
	OldOfferAccepted int `json:"old_offer_accepted"`
	// BareRaft*: bare hashicorp/raft (no-op FSM, agora's storage and
	// transport, in this process) from leader shutdown to a committed
	// write, same profile, same run.
	BareRaftP50Ms float64 `json:"bare_raft_p50_ms"`
	BareRaftP99Ms float64 `json:"bare_raft_p99_ms"`
	// Per-round figures (ms), for the timeline plot.
	LeaderMs []float64 `json:"leader_ms"`
	OffersMs []float64 `json:"offers_ms"`
	AcceptMs []float64 `json:"accept_ms"`
	BareMs   []float64 `json:"bare_raft_ms"`
}

// Failover runs 3 masters and one agent as separate processes with a
// framework holding an offer and an operator writing roles in the
// background; each round it SIGKILLs the leader and times, from the kill:
// a committed write through a survivor, the framework's first OFFERS, and
// the acceptance of the offer held since before the kill. The killed
// master restarts between rounds. Then bare raft's election figure on the
// same machine (devcluster.BareFailover).
func Failover(ctx context.Context, o FailoverOptions) (FailoverResult, error) {
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.RaftProfile == "" {
		o.RaftProfile = "default"
	}
	res := FailoverResult{Rounds: o.Rounds, Profile: o.RaftProfile}
	p := newProgress(o.Progress, "failover")
	pc, err := startProcCluster(ctx, o.Binary, o.Dir, 1, o.RaftProfile, p)
	if err != nil {
		return res, err
	}
	defer pc.close()
	fctx, stopFramework := context.WithCancel(ctx)
	defer stopFramework()
	rec, fwDone, err := runFramework(fctx, pc, "bench-failover", false)
	if err != nil {
		return res, err
	}

	// Load: an operator writing roles through any master.
	lctx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	var loadWrites atomic.Int64
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		cl := client.New(joinURLs(pc.MasterURLs()))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			cctx, cancel := context.WithTimeout(lctx, 2*time.Second)
			if _, err := cl.Operator.SetRole(cctx, connect.NewRequest(&agorav1.SetRoleRequest{
				Role: &agorav1.Role{Name: "load-" + strconv.Itoa(i%8), Weight: float64(1 + i%4)}})); err == nil {
				loadWrites.Add(1)
			}
			cancel()
		}
	}()
	defer func() { stopLoad(); loadWG.Wait() }()

	var leaderDs, offerDs, acceptDs []time.Duration
	for round := range o.Rounds {
		var old *agorav1.Offer
		if err := rec.wait(ctx, time.Minute, "an offer before the kill", func() bool {
			old = rec.offerOn("")
			return old != nil
		}); err != nil {
			return res, err
		}
		li, err := pc.leader(ctx)
		if err != nil {
			return res, fmt.Errorf("clusterbench: round %d: %w", round, err)
		}
		rec.mu.Lock()
		offersBefore := len(rec.offersAt)
		rec.mu.Unlock()
		t0 := time.Now()
		if err := pc.KillMaster(li); err != nil {
			return res, fmt.Errorf("clusterbench: kill leader: %w", err)
		}

		var survivors []string
		for i, u := range pc.MasterURLs() {
			if i != li {
				survivors = append(survivors, u)
			}
		}
		leaderCh := make(chan error, 1)
		var leaderD time.Duration
		go func() {
			cl := client.New(joinURLs(survivors))
			leaderCh <- poll(ctx, 2*time.Minute, 5*time.Millisecond, func() (bool, error) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err := cl.Operator.SetRole(cctx, connect.NewRequest(&agorav1.SetRoleRequest{
					Role: &agorav1.Role{Name: "failover-" + strconv.Itoa(round), Weight: 1}}))
				if err == nil {
					leaderD = time.Since(t0)
				}
				return err == nil, nil
			})
		}()
		taskID := "failover-" + strconv.Itoa(round)
		failedBefore := false
		acceptErr := poll(ctx, 2*time.Minute, 5*time.Millisecond, func() (bool, error) {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err := rec.accept(cctx, old, taskID, "true")
			if failedBefore && acceptedMeanwhile(err) {
				// An earlier attempt, answered Unavailable (outcome
				// unknown: the leader died with it in flight), was applied.
				rec.mu.Lock()
				delete(rec.offers, old.GetId())
				delete(rec.offerAt, old.GetId())
				rec.mu.Unlock()
				return true, nil
			}
			failedBefore = failedBefore || err != nil
			if code := connect.CodeOf(err); err != nil && code != connect.CodeUnavailable && code != connect.CodeDeadlineExceeded && code != connect.CodeUnknown {
				return false, fmt.Errorf("clusterbench: round %d: accepting offer %s made before the kill: %w", round, old.GetId(), err)
			}
			return err == nil, nil
		})
		acceptD := time.Since(t0)
		if acceptErr != nil {
			return res, acceptErr
		}
		res.OldOfferAccepted++
		if err := rec.wait(ctx, 2*time.Minute, "OFFERS after the kill", func() bool { return len(rec.offersAt) > offersBefore }); err != nil {
			return res, err
		}
		rec.mu.Lock()
		offerD := rec.offersAt[offersBefore].Sub(t0)
		rec.mu.Unlock()
		if err := <-leaderCh; err != nil {
			return res, fmt.Errorf("clusterbench: round %d: no write committed after the kill: %w", round, err)
		}
		leaderDs, offerDs, acceptDs = append(leaderDs, leaderD), append(offerDs, offerD), append(acceptDs, acceptD)
		p.printf("round %d/%d: killed %s; write committed %v, OFFERS %v, old offer accepted %v", round+1, o.Rounds, pc.MasterID(li),
			leaderD.Round(time.Millisecond), offerD.Round(time.Millisecond), acceptD.Round(time.Millisecond))
		if err := pc.StartMaster(ctx, li); err != nil {
			return res, fmt.Errorf("clusterbench: restart %s: %w", pc.MasterID(li), err)
		}
		if err := pc.waitCaughtUp(ctx, li); err != nil {
			return res, err
		}
	}
	stopLoad()
	loadWG.Wait()
	stopFramework()
	<-fwDone
	p.printf("%d background writes committed; measuring bare raft", loadWrites.Load())
	pc.close()

	bare, err := devcluster.BareFailover(ctx, o.Rounds, o.RaftProfile, o.Dir)
	if err != nil {
		return res, fmt.Errorf("clusterbench: bare raft failover: %w", err)
	}
	res.LeaderP50Ms, res.LeaderP99Ms = percentileMs(leaderDs, 50), percentileMs(leaderDs, 99)
	res.OffersP50Ms, res.OffersP99Ms = percentileMs(offerDs, 50), percentileMs(offerDs, 99)
	res.AcceptP50Ms, res.AcceptP99Ms = percentileMs(acceptDs, 50), percentileMs(acceptDs, 99)
	res.BareRaftP50Ms, res.BareRaftP99Ms = percentileMs(bare, 50), percentileMs(bare, 99)
	res.LeaderMs, res.OffersMs, res.AcceptMs, res.BareMs = ms(leaderDs), ms(offerDs), ms(acceptDs), ms(bare)
	p.printf("leader p50 %.0f ms, offers p50 %.0f ms, bare raft p50 %.0f ms", res.LeaderP50Ms, res.OffersP50Ms, res.BareRaftP50Ms)
	return res, nil
}

// acceptedMeanwhile reports whether an Accept was refused because the
// offer has been accepted already.
func acceptedMeanwhile(err error) bool {
	return connect.CodeOf(err) == connect.CodeFailedPrecondition && strings.Contains(err.Error(), "no longer valid (accepted)")
}

func joinURLs(us []string) string {
	s := ""
	for i, u := range us {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

// waitCaughtUp waits until master i answers a stale status read with a
// leader and an applied index at the leader's commit index.
func (pc *procCluster) waitCaughtUp(ctx context.Context, i int) error {
	err := poll(ctx, 2*time.Minute, 20*time.Millisecond, func() (bool, error) {
		lead, err := pc.status(ctx)
		if err != nil {
			return false, nil
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := client.New(pc.MasterURLs()[i]).Operator.GetStatus(cctx,
			connect.NewRequest(&agorav1.GetStatusRequest{Read: &agorav1.ReadOptions{Stale: true}}))
		if err != nil {
			return false, nil
		}
		return resp.Msg.GetLeader().GetId() != "" && resp.Msg.GetRaft().GetAppliedIndex() >= lead.GetRaft().GetCommitIndex(), nil
	})
	if err != nil {
		return fmt.Errorf("clusterbench: %s catching up after restart: %w", pc.MasterID(i), err)
	}
	return nil
}
