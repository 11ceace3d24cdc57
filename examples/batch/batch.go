package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Config configures a job.
type Config struct {
	// Masters are the masters' addresses.
	Masters []string
	// Name is the framework's name (default "batch").
	Name string
	// Role is the role the job runs under (default "batch"); give it a
	// low priority and a utilization cap so it lives on slack.
	Role string
	// FrameworkID, when set, resubscribes as that framework: a restarted
	// job finds the units it already recorded.
	FrameworkID string
	// Revocable subscribes with the revocable-resources capability.
	Revocable bool
	// Units is how many work units the job has; Lines the lines of each
	// unit's file.
	Units, Lines int
	// CPUs and Mem are each unit task's resources (defaults 0.1, 32).
	CPUs, Mem float64
	// Work is the least time a unit task takes (see UnitConfig.Work).
	Work time.Duration
	// Command builds the shell command of unit u's task given the report
	// URL; it must run RunUnit (`agora batch unit ...`).
	Command func(unit, lines int, reportURL string, work time.Duration) string
	// Listen is where the framework serves unit reports (default
	// 127.0.0.1:0); Advertise the host:port tasks reach it at (default
	// the listener's address).
	Listen, Advertise string
	// MaxPerOffer bounds the tasks launched from one offer (default 8),
	// so the work spreads over the agents.
	MaxPerOffer int
	// Out receives one progress line per change; Logger the SDK's logs.
	Out    io.Writer
	Logger *slog.Logger
}

// Result is what a finished job reports.
type Result struct {
	FrameworkID string        `json:"framework_id"`
	Units       int           `json:"units"`
	Total       int64         `json:"total"`
	Launched    int           `json:"launched"`
	Preemptions int           `json:"preemptions"`
	Reruns      int           `json:"reruns"`
	Elapsed     time.Duration `json:"-"`
}

// recordKey is the framework record of unit u's count.
func recordKey(u int) string { return fmt.Sprintf("unit/%06d", u) }

// Progress is a snapshot of a running job.
type Progress struct {
	Done, Units, Running, Preemptions, Reruns int
}

// Job is a running batch job.
type Job struct {
	cfg   Config
	start time.Time

	mu          sync.Mutex
	d           framework.Driver
	fid         string
	loaded      bool              // records read after subscribing
	done        map[int]int64     // recorded units and their counts
	pending     map[int]bool      // units to (re)launch
	running     map[string]int    // task id -> unit
	runningOn   map[string]string // task id -> agent id
	attempts    map[int]int       // launches per unit
	launched    int
	preemptions int
	reruns      int
	finished    chan struct{} // closed when every unit is recorded
	fatal       chan error
}

// New checks cfg and returns a job ready to Run.
func New(cfg Config) (*Job, error) {
	if cfg.Units <= 0 || cfg.Lines <= 0 {
		return nil, errors.New("batch: units and lines must be > 0")
	}
	if cfg.Command == nil {
		return nil, errors.New("batch: no task command")
	}
	if cfg.Name == "" {
		cfg.Name = "batch"
	}
	if cfg.Role == "" {
		cfg.Role = "batch"
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = 0.1
	}
	if cfg.Mem <= 0 {
		cfg.Mem = 32
	}
	if cfg.MaxPerOffer <= 0 {
		cfg.MaxPerOffer = 8
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	j := &Job{cfg: cfg, done: map[int]int64{}, pending: map[int]bool{}, running: map[string]int{},
		runningOn: map[string]string{}, attempts: map[int]int{}, finished: make(chan struct{}), fatal: make(chan error, 1)}
	for u := range cfg.Units {
		j.pending[u] = true
	}
	return j, nil
}

// Progress returns the job's progress now.
func (j *Job) Progress() Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.progressLocked()
}

func (j *Job) progressLocked() Progress {
	return Progress{Done: len(j.done), Units: j.cfg.Units, Running: len(j.running), Preemptions: j.preemptions, Reruns: j.reruns}
}

func (j *Job) printf(format string, args ...any) {
	fmt.Fprintf(j.cfg.Out, "batch: "+format+"\n", args...)
}

// Run runs the job until every unit is recorded (then tears the framework
// down and returns the result) or ctx ends.
func (j *Job) Run(ctx context.Context) (Result, error) {
	j.start = time.Now()
	ln, err := net.Listen("tcp", j.cfg.Listen)
	if err != nil {
		return Result{}, fmt.Errorf("batch: listen: %w", err)
	}
	adv := j.cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	reportURL := "http://" + adv + "/report"
	srv := &http.Server{Handler: http.HandlerFunc(j.serveReport), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	info := &agorav1.FrameworkInfo{Id: j.cfg.FrameworkID, Name: j.cfg.Name, Roles: []string{j.cfg.Role}, FailoverTimeoutSeconds: 300}
	if j.cfg.Revocable {
		info.Capabilities = append(info.Capabilities, agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	s := &sched{j: j, reportURL: reportURL}
	runDone := make(chan error, 1)
	go func() {
		runDone <- framework.Run(runCtx, framework.Config{Masters: j.cfg.Masters, Info: info, Logger: j.cfg.Logger}, s)
	}()

	select {
	case err := <-runDone:
		return Result{}, fmt.Errorf("batch framework: %w", err)
	case err := <-j.fatal:
		stop()
		<-runDone
		return Result{}, err
	case <-ctx.Done():
		stop()
		<-runDone
		return Result{}, ctx.Err()
	case <-j.finished:
	}
	res := j.result()
	j.printf("job done: %d units, %d ERROR lines, %d tasks launched, %d preempted, %d reruns, in %s",
		res.Units, res.Total, res.Launched, res.Preemptions, res.Reruns, res.Elapsed.Round(time.Millisecond))
	// Kill what still runs (duplicates of recorded units), then tear down.
	if d := j.driver(); d != nil {
		tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.Teardown(tctx); err != nil {
			j.printf("teardown: %v", err)
		}
		cancel()
	}
	stop()
	if err := <-runDone; err != nil && !errors.Is(err, framework.ErrTornDown) && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("batch framework: %w", err)
	}
	return res, nil
}

// RunningOn returns how many of the job's tasks run on agent.
func (j *Job) RunningOn(agent string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, a := range j.runningOn {
		if a == agent {
			n++
		}
	}
	return n
}

// runningTasks lists the ids of the tasks the job launched that have not
// ended.
func (j *Job) runningTasks() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.running))
	for id := range j.running {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (j *Job) driver() framework.Driver {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.d
}

// result sums the recorded counts.
func (j *Job) result() Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := Result{FrameworkID: j.fid, Units: len(j.done), Launched: j.launched, Preemptions: j.preemptions, Reruns: j.reruns, Elapsed: time.Since(j.start)}
	for _, c := range j.done {
		r.Total += c
	}
	return r
}

// serveReport takes a unit's result: recorded durably before it answers.
func (j *Job) serveReport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/report" {
		http.Error(w, "POST /report", http.StatusNotFound)
		return
	}
	var rep Report
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&rep); err != nil {
		http.Error(w, "bad report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if rep.Unit < 0 || rep.Unit >= j.cfg.Units || rep.Count < 0 {
		http.Error(w, fmt.Sprintf("unit %d out of range", rep.Unit), http.StatusBadRequest)
		return
	}
	if err := j.record(r.Context(), rep); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// record stores unit's count as a framework record (create only) and
// marks it done. A record that exists already holds the same count.
func (j *Job) record(ctx context.Context, rep Report) error {
	j.mu.Lock()
	d, loaded := j.d, j.loaded
	_, already := j.done[rep.Unit]
	j.mu.Unlock()
	if already {
		return nil
	}
	if d == nil || !loaded {
		return errors.New("not subscribed yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := d.PutRecord(ctx, recordKey(rep.Unit), []byte(strconv.FormatInt(rep.Count, 10)), 0)
	if err != nil && connect.CodeOf(err) != connect.CodeFailedPrecondition {
		return fmt.Errorf("recording unit %d: %w", rep.Unit, err)
	}
	// FailedPrecondition: it exists (an earlier report, or this one's
	// first attempt whose answer was lost); the count is the same.
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.done[rep.Unit]; ok {
		return nil
	}
	j.done[rep.Unit] = rep.Count
	delete(j.pending, rep.Unit)
	p := j.progressLocked()
	j.printf("unit %d recorded (%d ERROR lines): %d/%d units done, %d running, %d preempted, %d reruns",
		rep.Unit, rep.Count, p.Done, p.Units, p.Running, p.Preemptions, p.Reruns)
	if len(j.done) == j.cfg.Units {
		close(j.finished)
	}
	return nil
}

// load reads the units recorded before (a resubscription, or a restarted
// job with its framework id).
func (j *Job) load(d framework.Driver) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, err := d.ListRecords(ctx, "unit/")
	if err != nil {
		return fmt.Errorf("batch: reading recorded units: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, rec := range recs {
		u, err1 := strconv.Atoi(strings.TrimPrefix(rec.GetKey(), "unit/"))
		c, err2 := strconv.ParseInt(string(rec.GetValue()), 10, 64)
		if err1 != nil || err2 != nil || u < 0 || u >= j.cfg.Units {
			return fmt.Errorf("batch: record %s=%q is not a unit of this job", rec.GetKey(), rec.GetValue())
		}
		if _, ok := j.done[u]; !ok {
			j.done[u] = c
			delete(j.pending, u)
		}
	}
	j.loaded = true
	if len(recs) > 0 {
		j.printf("found %d recorded units", len(recs))
	}
	if len(j.done) == j.cfg.Units {
		select {
		case <-j.finished:
		default:
			close(j.finished)
		}
	}
	return nil
}

// sched is the job's framework.Scheduler.
type sched struct {
	j         *Job
	reportURL string
}

// Subscribed implements framework.Scheduler.
func (s *sched) Subscribed(d framework.Driver, id string, resubscribed bool) {
	j := s.j
	j.mu.Lock()
	j.d, j.fid = d, id
	j.mu.Unlock()
	j.printf("subscribed as framework %s (role %s, resubscribed=%v)", id, j.cfg.Role, resubscribed)
	if err := j.load(d); err != nil {
		select {
		case j.fatal <- err:
		default:
		}
	}
}

// Offers implements framework.Scheduler.
func (s *sched) Offers(d framework.Driver, offers []*agorav1.Offer) {
	j := s.j
	ctx := context.Background()
	for _, o := range offers {
		cpus := framework.ScalarIn(o.GetResources(), "cpus", "")
		mem := framework.ScalarIn(o.GetResources(), "mem", "")
		var tasks []*agorav1.TaskInfo
		j.mu.Lock()
		units := make([]int, 0, len(j.pending))
		if j.loaded {
			for u := range j.pending {
				units = append(units, u)
			}
		}
		sort.Ints(units)
		for _, u := range units {
			if len(tasks) >= j.cfg.MaxPerOffer || cpus < j.cfg.CPUs || mem < j.cfg.Mem {
				break
			}
			j.attempts[u]++
			id := fmt.Sprintf("unit-%d-%d", u, j.attempts[u])
			cmd := j.cfg.Command(u, j.cfg.Lines, s.reportURL, j.cfg.Work)
			tasks = append(tasks, framework.Task(id, o.GetAgentId(), cmd,
				framework.Scalar("cpus", j.cfg.CPUs), framework.Scalar("mem", j.cfg.Mem)))
			delete(j.pending, u)
			j.running[id] = u
			j.runningOn[id] = o.GetAgentId()
			cpus -= j.cfg.CPUs
			mem -= j.cfg.Mem
		}
		j.mu.Unlock()
		if len(tasks) == 0 {
			refuse := 1.0
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(tasks...)}, nil)
		j.mu.Lock()
		for _, t := range tasks {
			if err != nil {
				u := j.running[t.GetTaskId()]
				delete(j.running, t.GetTaskId())
				delete(j.runningOn, t.GetTaskId())
				if _, ok := j.done[u]; !ok {
					j.pending[u] = true
				}
				continue
			}
			j.launched++
		}
		j.mu.Unlock()
		if err != nil {
			j.printf("launch on agent %s failed: %v", o.GetAgentId(), err)
		}
	}
}

// Rescind implements framework.Scheduler.
func (s *sched) Rescind(framework.Driver, string) {}

// Update implements framework.Scheduler: a unit whose task ended without
// its result recorded runs again.
func (s *sched) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	if !framework.IsTerminal(st.GetState()) {
		return
	}
	j := s.j
	j.mu.Lock()
	defer j.mu.Unlock()
	u, ok := j.running[st.GetTaskId()]
	if !ok {
		return // an earlier incarnation's task, or one already handled
	}
	delete(j.running, st.GetTaskId())
	delete(j.runningOn, st.GetTaskId())
	if _, recorded := j.done[u]; recorded {
		return
	}
	preempted := isPreemption(st)
	if preempted {
		j.preemptions++
	}
	j.reruns++
	j.pending[u] = true
	j.printf("unit %d: task %s %s (%s): runs again; %d/%d done, %d preempted, %d reruns",
		u, st.GetTaskId(), framework.StateName(st.GetState()), reasonOf(st), len(j.done), j.cfg.Units, j.preemptions, j.reruns)
}

// isPreemption reports whether a task ended because the cluster took its
// resources back (preempted for priority work, or a drain's deadline).
func isPreemption(st *agorav1.TaskStatus) bool {
	r := strings.ToUpper(st.GetReason() + " " + st.GetMessage())
	return strings.Contains(r, "PREEMPT") || strings.Contains(r, "DRAIN")
}

func reasonOf(st *agorav1.TaskStatus) string {
	if r := st.GetReason(); r != "" {
		return r
	}
	if m := st.GetMessage(); m != "" {
		return m
	}
	return "no reason"
}

// InverseOffers implements framework.InverseOfferScheduler: a draining
// agent wants its resources back. The job accepts ("I will move"): no new
// units go there (the master offers nothing of a draining agent), the
// units running there finish if they can before the deadline, and those
// that cannot are killed now and run again elsewhere (yielding early
// rather than being killed at the deadline).
func (s *sched) InverseOffers(d framework.Driver, offers []*agorav1.InverseOffer) {
	j := s.j
	ctx := context.Background()
	for _, io := range offers {
		agent := io.GetAgentId()
		yield := io.GetDeadline() != nil && time.Until(io.GetDeadline().AsTime()) < 2*j.cfg.Work+5*time.Second
		j.mu.Lock()
		var kill []string
		for id, a := range j.runningOn {
			if a == agent && yield {
				kill = append(kill, id)
			}
		}
		j.mu.Unlock()
		sort.Strings(kill)
		if err := d.AcceptInverseOffer(ctx, agent); err != nil {
			j.printf("answering the drain of agent %s: %v", agent, err)
		}
		j.printf("agent %s drains (deadline %s): %d units yield now and run again elsewhere, the others finish there",
			agent, deadlineString(io), len(kill))
		for _, id := range kill {
			if err := d.Kill(ctx, id, agent); err != nil {
				j.printf("yielding task %s: %v", id, err)
			}
		}
	}
}

func deadlineString(io *agorav1.InverseOffer) string {
	if io.GetDeadline() == nil {
		return "none"
	}
	return io.GetDeadline().AsTime().Format(time.RFC3339)
}

// Failure implements framework.Scheduler.
func (s *sched) Failure(_ framework.Driver, agentID string) {
	s.j.printf("agent %s lost", agentID)
}

// Error implements framework.Scheduler.
func (s *sched) Error(_ framework.Driver, message string) {
	s.j.printf("error from the masters: %s", message)
}
