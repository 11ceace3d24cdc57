package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// WriteBench configures BenchWrites.
type WriteBench struct {
	// Writers is the number of concurrent writers; default 64.
	Writers int
	// Duration is how long each side is measured; default 5s.
	Duration time.Duration
	// Dir is where both clusters keep their data (same disk); "" = temp.
	Dir string
	// RaftProfile for both sides; default master.RaftProfileDefault.
	RaftProfile string
	// Logger; nil discards logs.
	Logger *slog.Logger
	// TLS runs agora's side with mutual TLS on (Options.TLS), the
	// client presenting a client certificate; bare raft stays plain.
	TLS bool
	// ConnectProfile, optional, receives a CPU profile (pprof) of the
	// Connect API phase alone.
	ConnectProfile io.Writer
	// Warmup is how long the writers run, uncounted, before each side's
	// measured phase: a cluster just started is still settling (the new
	// leader's first tasks, followers catching up, the clients' first
	// connections), which would fall on whichever phase comes first.
	// Default 1s; negative for none.
	Warmup time.Duration
	// Conns spreads the Connect writers over this many clients, each with
	// its own HTTP/2 connection (writer w uses client w mod Conns), as
	// writers on separate machines would; default 1.
	Conns int
	// WritesInFlight is each client's client.WithWritesInFlight: the
	// SetRole RPCs it keeps in flight before it carries further
	// concurrent calls together in one SetRoles RPC (each call still
	// answered on its own); 0 is the client's default, -1 one RPC per call.
	WritesInFlight int
}

// WriteResult compares agora's replicated write rate with bare Raft's.
type WriteResult struct {
	// AgoraPerSec is SetRole calls/s through the Connect API on the leader.
	AgoraPerSec float64
	// DirectPerSec is Master.Apply calls/s on the leader (agora's FSM and
	// raft setup without the RPC layer), for diagnosis.
	DirectPerSec float64
	// BarePerSec is raft.Apply calls/s with a no-op FSM.
	BarePerSec float64
	// Ratio is AgoraPerSec / BarePerSec.
	Ratio float64
	// AgoraErrors counts failed SetRole and Master.Apply calls (should
	// be 0); BareErrors failed raft.Apply calls (should be 0; a bare
	// leader that lost its leadership fails every write at once, which
	// would otherwise count as a write). Neither counts in a rate.
	AgoraErrors, BareErrors int64
	// FirstError is the first failed call's error, "" when none failed.
	FirstError string
	// AgoraEntries and DirectEntries count the Raft log entries the
	// leader appended during the Connect and Master.Apply phases: agora's
	// leader batches concurrent writes into one entry (fsm.CmdBatch), so
	// there are fewer entries than writes. Bare raft appends one entry per
	// write, always.
	AgoraEntries, DirectEntries uint64
	// AgoraRPCs counts the SetRole and SetRoles RPCs the Connect phase's
	// calls took (fewer than its writes when calls were carried together).
	AgoraRPCs uint64
	// AgoraCPUPerWrite, DirectCPUPerWrite and BareCPUPerWrite are the
	// process's CPU time (user + system, every goroutine: client, masters,
	// raft) over the writes of each phase. On a shared machine, where a
	// phase's rate depends on the CPU it was given, this is the steadier
	// comparison.
	AgoraCPUPerWrite, DirectCPUPerWrite, BareCPUPerWrite time.Duration
}

// String formats the result on one line.
func (r WriteResult) String() string {
	return fmt.Sprintf("agora %.0f writes/s (Connect API, %d RPCs, %d log entries, %v CPU each), %.0f writes/s (Master.Apply, %d log entries, %v CPU each), bare raft %.0f writes/s (one entry each, %v CPU each), ratio %.2f (errors %d agora, %d bare)",
		r.AgoraPerSec, r.AgoraRPCs, r.AgoraEntries, r.AgoraCPUPerWrite.Round(time.Microsecond), r.DirectPerSec, r.DirectEntries, r.DirectCPUPerWrite.Round(time.Microsecond),
		r.BarePerSec, r.BareCPUPerWrite.Round(time.Microsecond), r.Ratio, r.AgoraErrors, r.BareErrors) + firstErrorNote(r.FirstError)
}

func firstErrorNote(e string) string {
	if e == "" {
		return ""
	}
	return "; first error: " + e
}

func benchDir(dir, prefix string) (string, func(), error) {
	if dir != "" {
		d := filepath.Join(dir, prefix+strconv.FormatInt(time.Now().UnixNano(), 36))
		return d, func() { _ = os.RemoveAll(d) }, os.MkdirAll(d, 0o755)
	}
	d, err := os.MkdirTemp("", prefix)
	return d, func() { _ = os.RemoveAll(d) }, err
}

func quiet(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// BenchWrites measures replicated writes on a 3-master loopback cluster:
// SetRole through agora's Connect API from concurrent writers, then bare
// hashicorp/raft (same config, storage and transport) with a no-op FSM
// applying the same bytes, on the same disk in the same run.
func BenchWrites(ctx context.Context, o WriteBench) (res WriteResult, err error) {
	if o.Writers <= 0 {
		o.Writers = 64
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.RaftProfile == "" {
		o.RaftProfile = master.RaftProfileDefault
	}
	if o.Warmup == 0 {
		o.Warmup = time.Second
	}
	log := quiet(o.Logger)

	dir, cleanup, err := benchDir(o.Dir, "agora-bench-writes-")
	if err != nil {
		return res, fmt.Errorf("devcluster: bench dir: %w", err)
	}
	defer cleanup()

	c, err := Start(ctx, Options{Masters: 3, DataDir: filepath.Join(dir, "agora"), RaftProfile: o.RaftProfile, Logger: log, TLS: o.TLS})
	if err != nil {
		return res, err
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		c.Stop()
		return res, err
	}
	var rpcs atomic.Uint64
	copts := []client.Option{client.WithWritesInFlight(o.WritesInFlight), client.WithClientOptions(connect.WithInterceptors(countCalls(&rpcs)))}
	if tlsCfg, err := c.ClientTLS("client", "bench"); err != nil {
		c.Stop()
		return res, err
	} else if tlsCfg != nil {
		copts = append(copts, client.WithTLS(tlsCfg))
	}
	clients := make([]*client.Client, max(o.Conns, 1))
	for i := range clients {
		clients[i] = client.New(leader.HTTPURL(), copts...)
	}
	var errs atomic.Int64
	var fe firstError
	defer func() { res.FirstError = fe.String() }()
	setRole := func(ctx context.Context, w, i int) error {
		_, err := clients[w%len(clients)].Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{
			Role: &agorav1.Role{Name: "w" + strconv.Itoa(w) + "-" + strconv.Itoa(i%4), Weight: float64(i%10 + 1)},
		}))
		return err
	}
	if o.Warmup > 0 {
		_, bad := runCountedErr(ctx, o.Writers, o.Warmup, setRole, &fe)
		errs.Add(bad)
	}
	if o.ConnectProfile != nil {
		if err := pprof.StartCPUProfile(o.ConnectProfile); err != nil {
			c.Stop()
			return res, fmt.Errorf("devcluster: cpu profile: %w", err)
		}
	}
	first := leader.Raft().LastIndex()
	rpcs0 := rpcs.Load()
	cpu0 := ProcessCPU()
	n, bad := runCountedErr(ctx, o.Writers, o.Duration, setRole, &fe)
	errs.Add(bad)
	if o.ConnectProfile != nil {
		pprof.StopCPUProfile()
	}
	res.AgoraCPUPerWrite = perWrite(ProcessCPU()-cpu0, n)
	res.AgoraRPCs = rpcs.Load() - rpcs0
	res.AgoraPerSec = float64(n) / o.Duration.Seconds()
	res.AgoraErrors = errs.Load()
	mid := leader.Raft().LastIndex()
	res.AgoraEntries = mid - first
	cpu0 = ProcessCPU()
	n, bad = runCountedErr(ctx, o.Writers, o.Duration, func(ctx context.Context, w, i int) error {
		_, err := leader.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{
			Role: &agorav1.Role{Name: "d" + strconv.Itoa(w) + "-" + strconv.Itoa(i%4), Weight: float64(i%10 + 1)},
		})
		return err
	}, &fe)
	errs.Add(bad)
	res.DirectCPUPerWrite = perWrite(ProcessCPU()-cpu0, n)
	res.DirectPerSec = float64(n) / o.Duration.Seconds()
	res.AgoraErrors = errs.Load()
	res.DirectEntries = leader.Raft().LastIndex() - mid
	c.Stop()

	payload, err := fsm.Encode(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "w12-34", Weight: 5}})
	if err != nil {
		return res, err
	}
	bc, err := startBare(ctx, filepath.Join(dir, "bare"), o.RaftProfile, log)
	if err != nil {
		return res, err
	}
	defer bc.stop()
	bl, err := bc.waitLeader(ctx)
	if err != nil {
		return res, err
	}
	bareApply := func(_ context.Context, _, _ int) error {
		return bc.nodes[bl].r.Apply(payload, 10*time.Second).Error()
	}
	if o.Warmup > 0 {
		_, bad = runCountedErr(ctx, o.Writers, o.Warmup, bareApply, &fe)
		res.BareErrors += bad
	}
	cpu0 = ProcessCPU()
	n, bad = runCountedErr(ctx, o.Writers, o.Duration, bareApply, &fe)
	res.BareErrors += bad
	res.BareCPUPerWrite = perWrite(ProcessCPU()-cpu0, n)
	res.BarePerSec = float64(n) / o.Duration.Seconds()
	if res.BarePerSec > 0 {
		res.Ratio = res.AgoraPerSec / res.BarePerSec
	}
	return res, nil
}

// countCalls is a client interceptor counting the unary RPCs sent
// (every attempt).
func countCalls(n *atomic.Uint64) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			n.Add(1)
			return next(ctx, req)
		}
	}
}

// ProcessCPU is the CPU time (user + system) this process has used so far;
// 0 when the system does not say.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perWrite divides cpu over n writes (0 for none).
func perWrite(cpu time.Duration, n int64) time.Duration {
	if n <= 0 || cpu < 0 {
		return 0
	}
	return cpu / time.Duration(n)
}

// runWriters runs op from w goroutines for d and returns how many calls
// completed within d.
func runWriters(ctx context.Context, w int, d time.Duration, op func(ctx context.Context, w, i int)) int64 {
	ok, _ := runCountedErr(ctx, w, d, func(ctx context.Context, w, i int) error {
		op(ctx, w, i)
		return nil
	}, nil)
	return ok
}

// runCountedErr runs op from w goroutines for d and returns how many
// calls succeeded and how many failed within d (a failed call is not a
// write); first, when not nil, keeps the first error.
func runCountedErr(ctx context.Context, w int, d time.Duration, op func(ctx context.Context, w, i int) error, first *firstError) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, bad atomic.Int64
	var wg sync.WaitGroup
	for g := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				err := op(context.WithoutCancel(ctx), g, i)
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					bad.Add(1)
					first.keep(err)
				} else {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), bad.Load()
}

// FailoverBench configures BenchFailover.
type FailoverBench struct {
	// Rounds of leader kills; default 10.
	Rounds int
	// RaftProfile for both sides; default master.RaftProfileDefault.
	RaftProfile string
	// Dir as in WriteBench.
	Dir string
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// FailoverResult holds leader kill -> new leader accepting writes times.
type FailoverResult struct {
	Profile     string
	Agora, Bare []time.Duration
}

// Percentile returns the p-th percentile (0..100, nearest rank) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// String formats p50/p99/max of both sides.
func (r FailoverResult) String() string {
	f := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %v p99 %v max %v", Percentile(ds, 50).Round(time.Millisecond),
			Percentile(ds, 99).Round(time.Millisecond), slices.Max(append([]time.Duration{0}, ds...)).Round(time.Millisecond))
	}
	ratio := 0.0
	if b := Percentile(r.Bare, 50); b > 0 {
		ratio = float64(Percentile(r.Agora, 50)) / float64(b)
	}
	return fmt.Sprintf("profile %s: agora %s; bare raft %s; p50 ratio %.2f", r.Profile, f(r.Agora), f(r.Bare), ratio)
}

// BenchFailover kills the leader of a 3-master loopback cluster Rounds
// times and measures the time until a write is accepted again (through
// the Connect API from a client of a surviving master), restarting the
// killed master between rounds; then the same with bare hashicorp/raft.
func BenchFailover(ctx context.Context, o FailoverBench) (FailoverResult, error) {
	if o.Rounds <= 0 {
		o.Rounds = 10
	}
	if o.RaftProfile == "" {
		o.RaftProfile = master.RaftProfileDefault
	}
	log := quiet(o.Logger)
	res := FailoverResult{Profile: o.RaftProfile}
	dir, cleanup, err := benchDir(o.Dir, "agora-bench-failover-")
	if err != nil {
		return res, fmt.Errorf("devcluster: bench dir: %w", err)
	}
	defer cleanup()

	c, err := Start(ctx, Options{Masters: 3, DataDir: filepath.Join(dir, "agora"), RaftProfile: o.RaftProfile, Logger: log})
	if err != nil {
		return res, err
	}
	defer c.Stop()
	for round := range o.Rounds {
		if _, err := c.WaitLeader(ctx); err != nil {
			return res, err
		}
		li := c.LeaderIndex()
		cl := client.New(c.Addrs()[(li+1)%3])
		t0 := time.Now()
		c.Kill(li)
		for i := 0; ; i++ {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := cl.Operator.SetRole(actx, connect.NewRequest(&agorav1.SetRoleRequest{
				Role: &agorav1.Role{Name: "failover-" + strconv.Itoa(round), Weight: 1},
			}))
			cancel()
			if err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		res.Agora = append(res.Agora, time.Since(t0))
		if err := c.Restart(ctx, li); err != nil {
			return res, err
		}
		if err := c.waitCaughtUp(ctx); err != nil {
			return res, err
		}
	}
	c.Stop()

	bc, err := startBare(ctx, filepath.Join(dir, "bare"), o.RaftProfile, log)
	if err != nil {
		return res, err
	}
	defer bc.stop()
	payload := []byte{byte(fsm.CmdSetRole)}
	for range o.Rounds {
		li, err := bc.waitLeader(ctx)
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		bc.kill(li)
	retry:
		for {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			for i, nd := range bc.nodes {
				if i != li && nd.r.State() == raft.Leader && nd.r.Apply(payload, 2*time.Second).Error() == nil {
					break retry
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		res.Bare = append(res.Bare, time.Since(t0))
		if err := bc.restart(li); err != nil {
			return res, err
		}
		if err := bc.waitCaughtUp(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// waitCaughtUp waits for a leader known to all and every master's applied
// index to reach the leader's commit index.
func (c *Cluster) waitCaughtUp(ctx context.Context) error {
	l, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	target := l.Raft().CommitIndex()
	return pollUntil(ctx, "catching up", func() bool {
		for i, m := range c.Masters() {
			if c.Alive(i) && m.Raft().AppliedIndex() < target {
				return false
			}
		}
		return true
	})
}

// bareCluster is hashicorp/raft with agora's config, storage and
// transport but a no-op FSM: the baseline for benchmarks.
type bareCluster struct {
	dir, profile string
	log          *slog.Logger
	addrs        []string
	nodes        []*bareNode
}

type bareNode struct {
	r     *raft.Raft
	st    *master.RaftStorage
	alive bool
}

type noopFSM struct{}

func (noopFSM) Apply(*raft.Log) any                 { return nil }
func (noopFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (noopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}

func startBare(ctx context.Context, dir, profile string, log *slog.Logger) (*bareCluster, error) {
	bc := &bareCluster{dir: dir, profile: profile, log: log}
	for range 3 {
		p, err := FreeTCPPort()
		if err != nil {
			return nil, err
		}
		bc.addrs = append(bc.addrs, loopback(p))
		bc.nodes = append(bc.nodes, &bareNode{})
	}
	conf := raft.Configuration{}
	for i, a := range bc.addrs {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID("b" + strconv.Itoa(i)), Address: raft.ServerAddress(a)})
	}
	for i := range bc.nodes {
		if err := bc.restart(i); err != nil {
			bc.stop()
			return nil, err
		}
	}
	if err := bc.nodes[0].r.BootstrapCluster(conf).Error(); err != nil {
		bc.stop()
		return nil, fmt.Errorf("devcluster: bare bootstrap: %w", err)
	}
	return bc, ctx.Err()
}

func (bc *bareCluster) restart(i int) error {
	id := "b" + strconv.Itoa(i)
	conf, err := master.NewRaftConfig(id, bc.profile, bc.log)
	if err != nil {
		return err
	}
	st, err := master.OpenRaftStorage(filepath.Join(bc.dir, id), bc.log)
	if err != nil {
		return err
	}
	trans, err := master.NewRaftTransport(bc.addrs[i], bc.log)
	if err != nil {
		_ = st.Bolt.Close()
		return err
	}
	r, err := raft.NewRaft(conf, noopFSM{}, st.Logs, st.Bolt, st.Snaps, trans)
	if err != nil {
		_ = st.Bolt.Close()
		_ = trans.Close()
		return fmt.Errorf("devcluster: bare raft: %w", err)
	}
	bc.nodes[i] = &bareNode{r: r, st: st, alive: true}
	return nil
}

func (bc *bareCluster) kill(i int) {
	n := bc.nodes[i]
	if !n.alive {
		return
	}
	n.alive = false
	_ = n.r.Shutdown().Error()
	_ = n.st.Bolt.Close()
}

func (bc *bareCluster) stop() {
	for i := range bc.nodes {
		if bc.nodes[i].r != nil {
			bc.kill(i)
		}
	}
}

func (bc *bareCluster) waitLeader(ctx context.Context) (int, error) {
	for {
		for i, n := range bc.nodes {
			if n.alive && n.r.State() == raft.Leader {
				if err := n.r.Barrier(5 * time.Second).Error(); err == nil {
					return i, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return -1, errors.Join(errors.New("devcluster: bare raft has no leader"), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (bc *bareCluster) waitCaughtUp(ctx context.Context) error {
	li, err := bc.waitLeader(ctx)
	if err != nil {
		return err
	}
	target := bc.nodes[li].r.CommitIndex()
	return pollUntil(ctx, "bare catching up", func() bool {
		for _, n := range bc.nodes {
			if n.alive && (n.r.AppliedIndex() < target || n.r.Leader() == "") {
				return false
			}
		}
		return true
	})
}

// pollUntil checks cond every 10 ms until it holds or ctx ends.
func pollUntil(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("devcluster: %s: %w", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// firstError keeps the first error it is given; a nil one keeps none.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) keep(err error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// String is the kept error's text, "" for none.
func (f *firstError) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		return ""
	}
	return f.err.Error()
}
