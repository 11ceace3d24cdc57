package clusterbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agora-sched/agora/chaos"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// quietLogger discards the framework's log, unless $AGORA_BENCH_DEBUG is
// set: then its debug log goes to stderr, with times, to root-cause a slow
// round.
func quietLogger() *slog.Logger {
	if os.Getenv("AGORA_BENCH_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// masterLogLevel is the masters' --log-level: warn, or debug with
// $AGORA_BENCH_DEBUG.
func masterLogLevel() string {
	if os.Getenv("AGORA_BENCH_DEBUG") != "" {
		return "debug"
	}
	return "warn"
}

// procCluster is a process-tier cluster (separate agora processes) with
// helpers the benchmarks share.
type procCluster struct {
	chaos.Cluster
	dir     string
	tempDir bool
}

// startProcCluster starts masters and agents as separate processes of
// binary and waits for a leader and every agent ACTIVE.
func startProcCluster(ctx context.Context, binary, dir string, agents int, raftProfile string, p *progress) (*procCluster, error) {
	if binary == "" {
		return nil, errors.New("clusterbench: the agora binary is required (Options.Binary)")
	}
	pc := &procCluster{dir: dir}
	if dir == "" {
		d, err := os.MkdirTemp("", "agora-bench-")
		if err != nil {
			return nil, fmt.Errorf("clusterbench: %w", err)
		}
		pc.dir, pc.tempDir = d, true
	}
	c, err := chaos.NewProcessCluster(chaos.ProcessOptions{Binary: binary, Dir: pc.dir, Masters: 3, Agents: agents,
		ExtraMasterArgs: []string{"--raft-profile", raftProfile, "--log-level", masterLogLevel()}})
	if err != nil {
		pc.cleanup()
		return nil, fmt.Errorf("clusterbench: %w", err)
	}
	pc.Cluster = c
	// Masters first, then agents in batches, each waited for: a hundred
	// agents joining gossip at once on a small machine starved the masters
	// (gossip handler queues full, raft elections timing out for minutes).
	var errs []error
	for i := range c.Masters() {
		errs = append(errs, c.StartMaster(ctx, i))
	}
	if err := errors.Join(errs...); err != nil {
		pc.close()
		return nil, fmt.Errorf("clusterbench: start: %w", err)
	}
	if err := pc.waitActive(ctx, 0); err != nil {
		pc.close()
		return nil, fmt.Errorf("clusterbench: waiting for a leader: %w", err)
	}
	for lo := 0; lo < agents; lo += agentBatch {
		hi := min(lo+agentBatch, agents)
		for i := lo; i < hi; i++ {
			errs = append(errs, c.StartAgent(ctx, i))
		}
		if err := errors.Join(errs...); err != nil {
			pc.close()
			return nil, fmt.Errorf("clusterbench: start: %w", err)
		}
		if err := pc.waitActive(ctx, hi); err != nil {
			pc.close()
			return nil, fmt.Errorf("clusterbench: waiting for a leader and %d agents ACTIVE: %w", hi, err)
		}
	}
	p.printf("3 masters (raft profile %s) and %d agents started as processes in %s", raftProfile, agents, pc.dir)
	p.printf("leader elected, %d agents ACTIVE", agents)
	return pc, nil
}

// agentBatch is how many agent processes start together.
const agentBatch = 20

// waitActive waits for a leader and at least n agents ACTIVE. Its error
// says what it saw last (no leader, or how many agents were ACTIVE).
func (pc *procCluster) waitActive(ctx context.Context, n int) error {
	seen := "no master answered"
	err := poll(ctx, 3*time.Minute, 100*time.Millisecond, func() (bool, error) {
		st, err := pc.status(ctx)
		if err != nil {
			seen = "no leader: " + err.Error()
			return false, nil
		}
		var active int64
		for k, v := range st.GetCounts().GetAgentsByState() {
			if strings.EqualFold(strings.TrimPrefix(k, "AGENT_STATE_"), "active") {
				active = int64(v)
			}
		}
		seen = fmt.Sprintf("leader %s, %d agents ACTIVE", st.GetLeader().GetId(), active)
		return int(active) >= n, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last seen: %s)", err, seen)
	}
	return nil
}

func (pc *procCluster) cleanup() {
	if pc.tempDir {
		_ = os.RemoveAll(pc.dir)
	}
}

// close stops every process and removes a temporary directory.
func (pc *procCluster) close() {
	if pc.Cluster != nil {
		_ = pc.Close()
	}
	pc.cleanup()
}

// status asks each master in turn for the cluster status, until one
// names a leader.
func (pc *procCluster) status(ctx context.Context) (*agorav1.GetStatusResponse, error) {
	var last error = errors.New("no masters")
	for _, u := range pc.MasterURLs() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := client.New(u).Operator.GetStatus(cctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		cancel()
		if err == nil && resp.Msg.GetLeader().GetId() != "" {
			return resp.Msg, nil
		}
		if err == nil {
			err = errors.New("no leader")
		}
		last = err
	}
	return nil, last
}

// leader returns the index of the current leader.
func (pc *procCluster) leader(ctx context.Context) (int, error) {
	st, err := pc.status(ctx)
	if err != nil {
		return -1, err
	}
	for i := range pc.Masters() {
		if pc.MasterID(i) == st.GetLeader().GetId() {
			return i, nil
		}
	}
	return -1, fmt.Errorf("clusterbench: leader %q is not one of ours", st.GetLeader().GetId())
}

// poll calls cond every interval until it holds, fails, or limit passes.
func poll(ctx context.Context, limit, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not within %v", limit)
		case <-tick.C:
		}
	}
}

// recorder is a framework.Scheduler that records what reaches the
// framework, with arrival times, for the benchmarks to wait on.
type recorder struct {
	mu         sync.Mutex
	changed    chan struct{}
	driver     framework.Driver
	offers     map[string]*agorav1.Offer // outstanding, by id
	offerAt    map[string]time.Time      // arrival of each outstanding offer
	offersAt   []time.Time               // every OFFERS event
	rescinded  map[string]time.Time      // offer id -> RESCIND arrival
	statusAt   map[string]time.Time      // "task/STATE" -> first arrival
	subscribed int
	errMsg     string
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), offers: map[string]*agorav1.Offer{}, offerAt: map[string]time.Time{},
		rescinded: map[string]time.Time{}, statusAt: map[string]time.Time{}}
}

// notify wakes every waiter; the caller holds mu.
func (r *recorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) Subscribed(d framework.Driver, _ string, _ bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.driver = d
	r.subscribed++
	r.notify()
}

func (r *recorder) Offers(_ framework.Driver, offers []*agorav1.Offer) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range offers {
		if _, ok := r.offers[o.GetId()]; !ok {
			r.offerAt[o.GetId()] = now
		}
		r.offers[o.GetId()] = o
	}
	r.offersAt = append(r.offersAt, now)
	r.notify()
}

func (r *recorder) Rescind(_ framework.Driver, offerID string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.offers, offerID)
	delete(r.offerAt, offerID)
	if _, ok := r.rescinded[offerID]; !ok {
		r.rescinded[offerID] = now
	}
	r.notify()
}

func (r *recorder) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	k := st.GetTaskId() + "/" + st.GetState().String()
	if _, ok := r.statusAt[k]; !ok {
		r.statusAt[k] = now
	}
	r.notify()
}

func (r *recorder) Failure(framework.Driver, string) {}

func (r *recorder) Error(_ framework.Driver, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errMsg = message
	r.notify()
}

// wait blocks until cond (called with mu held) holds, ctx ends, limit
// passes or the framework got an ERROR.
func (r *recorder) wait(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch, msg := cond(), r.changed, r.errMsg
		r.mu.Unlock()
		if ok {
			return nil
		}
		if msg != "" {
			return fmt.Errorf("clusterbench: framework error while waiting for %s: %s", what, msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("clusterbench: %s: not within %v", what, limit)
		case <-ch:
		}
	}
}

// offerOn returns an outstanding offer on agentID ("" any agent), the
// oldest id first; the caller holds mu.
func (r *recorder) offerOn(agentID string) *agorav1.Offer {
	var best *agorav1.Offer
	for _, o := range r.offers {
		if (agentID == "" || o.GetAgentId() == agentID) && (best == nil || o.GetId() < best.GetId()) {
			best = o
		}
	}
	return best
}

// runFramework runs the recorder as a framework against pc until ctx ends
// and waits for its first subscription.
func runFramework(ctx context.Context, pc *procCluster, name string, partitionAware bool) (*recorder, <-chan error, error) {
	rec := newRecorder()
	info := &agorav1.FrameworkInfo{Name: name, Roles: []string{"*"}, FailoverTimeoutSeconds: 600}
	if partitionAware {
		info.Capabilities = []agorav1.Capability{agorav1.Capability_CAPABILITY_PARTITION_AWARE}
	}
	done := make(chan error, 1)
	go func() {
		done <- framework.Run(ctx, framework.Config{Masters: pc.MasterURLs(), Info: info, MinBackoff: 10 * time.Millisecond,
			MaxBackoff: 200 * time.Millisecond, Logger: quietLogger()}, rec)
	}()
	if err := rec.wait(ctx, 3*time.Minute, "framework subscribed", func() bool { return rec.subscribed > 0 }); err != nil {
		return nil, nil, err
	}
	return rec, done, nil
}

// accept launches one task on offer o's agent with o, the rest of the
// offer returned without a filter, and forgets the offer.
func (r *recorder) accept(ctx context.Context, o *agorav1.Offer, taskID, cmd string) error {
	r.mu.Lock()
	d := r.driver
	r.mu.Unlock()
	zero := 0.0
	t := framework.Task(taskID, o.GetAgentId(), cmd, framework.Scalar("cpus", 0.05), framework.Scalar("mem", 16))
	if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(t)}, &zero); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.offers, o.GetId())
	delete(r.offerAt, o.GetId())
	r.mu.Unlock()
	return nil
}

// freshOfferOn returns an outstanding offer on agentID that arrived after
// t, or nil; the caller holds mu.
func (r *recorder) freshOfferOn(agentID string, t time.Time) *agorav1.Offer {
	for id, o := range r.offers {
		if o.GetAgentId() == agentID && r.offerAt[id].After(t) {
			return o
		}
	}
	return nil
}

// gossipSettle is how long every master must see the whole pool alive,
// and no member failed, before waitGossipSettled returns.
const gossipSettle = 2 * time.Second

// waitGossipSettled waits until every master's gossip pool has held all
// masters and agents alive, none failed, for gossipSettle. Agent
// processes joining gossip keep the machine busy for a while after they
// are all ACTIVE (joins and their broadcasts); a failure-detection
// benchmark that kills an agent before then times that start-up, not a
// running cluster.
func (pc *procCluster) waitGossipSettled(ctx context.Context, agents int) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	seen := "no master answered"
	var since time.Time
	err := poll(ctx, 3*time.Minute, 200*time.Millisecond, func() (bool, error) {
		for _, u := range pc.MasterURLs() {
			m, err := gossipMembers(ctx, hc, u)
			if err != nil {
				seen, since = err.Error(), time.Time{}
				return false, nil
			}
			if m["master/alive"] != pc.Masters() || m["agent/alive"] != agents || m["master/failed"]+m["agent/failed"] != 0 {
				seen, since = fmt.Sprintf("%s: %d of %d masters and %d of %d agents alive, %d failed", u,
					m["master/alive"], pc.Masters(), m["agent/alive"], agents, m["master/failed"]+m["agent/failed"]), time.Time{}
				return false, nil
			}
		}
		if since.IsZero() {
			since = time.Now()
		}
		seen = "settled for " + time.Since(since).Round(time.Millisecond).String()
		return time.Since(since) >= gossipSettle, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last seen: %s)", err, seen)
	}
	return nil
}

// gossipMembers reads agora_gossip_members from a master's /metrics, by
// "role/state".
func gossipMembers(ctx context.Context, hc *http.Client, baseURL string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", baseURL, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	out := map[string]int{}
	for _, m := range families["agora_gossip_members"].GetMetric() {
		var role, state string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "role":
				role = l.GetValue()
			case "state":
				state = l.GetValue()
			}
		}
		out[role+"/"+state] += int(m.GetGauge().GetValue())
	}
	return out, nil
}
