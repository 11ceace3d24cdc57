package master_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// scrape is one parsed /metrics page.
type scrape map[string]*dto.MetricFamily

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrapeURL fetches base+"/metrics" and parses it with the Prometheus text
// parser.
func scrapeURL(base string) (scrape, error) {
	resp, err := scrapeClient.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", base, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s/metrics: %w", base, err)
	}
	return mfs, nil
}

// sum adds up the series of name whose labels include want (a counter's
// or gauge's value, a histogram's sample count); found is false when no
// series matches.
func (s scrape) sum(name string, want map[string]string) (v float64, found bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if labels[k] != w {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, found
}

// scrapeWait bounds each wait of the scrape test: generous, as the test
// runs under the race detector on shared, loaded machines.
const scrapeWait = 60 * time.Second

// pollScrapes calls cond every 100 ms (scrapes are not free under the race
// detector) until it returns nil, or fails the test after scrapeWait.
func pollScrapes(t *testing.T, what string, cond func() error) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(scrapeWait)
	defer deadline.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %v: %v", what, scrapeWait, err)
		case <-tick.C:
		}
	}
}

// l builds a label set from pairs.
func l(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// metricsSched is the test's framework: it hands its offers to the test,
// or, once done, declines them (leaving the resources to the service).
type metricsSched struct {
	offers chan *agorav1.Offer
	done   atomic.Bool
	mu     sync.Mutex
	d      framework.Driver
}

func (s *metricsSched) Subscribed(d framework.Driver, _ string, _ bool) {
	s.mu.Lock()
	s.d = d
	s.mu.Unlock()
}

func (s *metricsSched) driver() framework.Driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d
}
func (s *metricsSched) Offers(d framework.Driver, offers []*agorav1.Offer) {
	for _, o := range offers {
		if s.done.Load() {
			refuse := 3600.0
			_ = d.Decline(context.Background(), []string{o.GetId()}, &refuse)
			continue
		}
		select {
		case s.offers <- o:
		default: // the test holds enough; the rest expire
		}
	}
}
func (s *metricsSched) Rescind(framework.Driver, string)             {}
func (s *metricsSched) Update(framework.Driver, *agorav1.TaskStatus) {}
func (s *metricsSched) Failure(framework.Driver, string)             {}
func (s *metricsSched) Error(framework.Driver, string)               {}

func (s *metricsSched) nextOffer(t *testing.T, ctx context.Context) *agorav1.Offer {
	t.Helper()
	select {
	case o := <-s.offers:
		return o
	case <-ctx.Done():
		t.Fatal("no offer before the test's deadline")
		return nil
	}
}

// TestMetricsScrapeMovesWithTheCluster scrapes the three masters and an
// agent of a live cluster, parses each page with the Prometheus text
// parser, checks that every documented series is there, and that the
// series move when the cluster does: a decline, a launch, an RPC, a drain
// whose deadline passes.
func TestMetricsScrapeMovesWithTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := testLogger()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: log,
		MasterConfig: func(mc *master.Config) {
			mc.HeartbeatInterval = time.Second
			mc.OfferTimeout = time.Minute
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	ag, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: "metrics-a1", Resources: "cpus:2;mem:2048;disk:1000", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	agentURL := "http://" + ag.HTTPAddr()

	// all scrapes every master; total sums a series over them (the
	// leader's counters stay with the master that counted them when
	// leadership moves).
	all := func() ([]scrape, error) {
		var out []scrape
		for _, m := range c.Masters() {
			s, err := scrapeURL(m.HTTPURL())
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	total := func(name string, want map[string]string) (float64, error) {
		ss, err := all()
		if err != nil {
			return 0, err
		}
		v := 0.0
		for _, s := range ss {
			x, _ := s.sum(name, want)
			v += x
		}
		return v, nil
	}
	// rises waits until total(name, want) exceeds base.
	rises := func(what, name string, want map[string]string, base float64) {
		t.Helper()
		pollScrapes(t, what, func() error {
			v, err := total(name, want)
			if err != nil {
				return err
			}
			if v <= base {
				return fmt.Errorf("%s%v = %v, still <= %v", name, want, v, base)
			}
			return nil
		})
	}
	// onEach waits until every master reports name{want} == v.
	onEach := func(what, name string, want map[string]string, v float64) {
		t.Helper()
		pollScrapes(t, what, func() error {
			ss, err := all()
			if err != nil {
				return err
			}
			for i, s := range ss {
				got, ok := s.sum(name, want)
				if !ok || got != v {
					return fmt.Errorf("master %d: %s%v = %v (present %v), want %v", i, name, want, got, ok, v)
				}
			}
			return nil
		})
	}
	onAgent := func(what, name string, want map[string]string, ok func(float64) bool) {
		t.Helper()
		pollScrapes(t, what, func() error {
			s, err := scrapeURL(agentURL)
			if err != nil {
				return err
			}
			v, found := s.sum(name, want)
			if !found || !ok(v) {
				return fmt.Errorf("agent: %s%v = %v (present %v)", name, want, v, found)
			}
			return nil
		})
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }

	onEach("the agent is active on every master", "agora_agents", l("state", "active"), 1)
	onEach("gossip sees the masters", "agora_gossip_members", l("role", "master", "state", "alive"), 3)
	onEach("gossip sees the agent", "agora_gossip_members", l("role", "agent", "state", "alive"), 1)
	onAgent("the agent registered", "agora_agent_registrations_total", nil, atLeast(1))
	onAgent("the agent's registration RPC is counted", "agora_rpc_client_requests_total", l("method", "RegisterAgent", "code", "ok"), atLeast(1))
	onAgent("the agent polls its assignments", "agora_rpc_client_requests_total", l("method", "GetAssignments"), atLeast(1))
	onAgent("the agent reports its outbox", "agora_agent_status_updates_pending", nil, atLeast(0))

	sched := &metricsSched{offers: make(chan *agorav1.Offer, 16)}
	fctx, fcancel := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() {
		fdone <- framework.Run(fctx, framework.Config{Masters: c.Addrs(), Logger: log, MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			Info: &agorav1.FrameworkInfo{Name: "metrics", Roles: []string{"*"}, FailoverTimeoutSeconds: 3600}}, sched)
	}()
	defer func() { fcancel(); <-fdone }()

	// A decline moves the leader's offer outcome counter and its RPC count.
	o := sched.nextOffer(t, ctx)
	onEach("the framework is connected on every master", "agora_frameworks", l("state", "connected"), 1)
	baseDeclined, err := total("agora_offers_removed_total", l("outcome", "declined"))
	if err != nil {
		t.Fatal(err)
	}
	baseDeclineRPC, err := total("agora_rpc_server_requests_total", l("method", "Decline", "code", "ok"))
	if err != nil {
		t.Fatal(err)
	}
	baseCreated, err := total("agora_offers_created_total", nil)
	if err != nil {
		t.Fatal(err)
	}
	if baseCreated < 1 {
		t.Fatalf("an offer arrived but agora_offers_created_total sums to %v", baseCreated)
	}
	refuse := 0.2
	sc := client.New(strings.Join(c.Addrs(), ","))
	d := sched.driver()
	if err := d.Decline(ctx, []string{o.GetId()}, &refuse); err != nil {
		t.Fatalf("decline: %v", err)
	}
	rises("a decline counts", "agora_offers_removed_total", l("outcome", "declined"), baseDeclined)
	rises("the Decline RPC counts", "agora_rpc_server_requests_total", l("method", "Decline", "code", "ok"), baseDeclineRPC)
	rises("the RPC is timed", "agora_rpc_server_request_duration_seconds", l("method", "Decline", "code", "ok"), baseDeclineRPC)

	// A bad call is counted with its code.
	baseBad, err := total("agora_rpc_server_requests_total", l("method", "DrainAgent", "code", "not_found"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: "no-such-agent"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("drain of an unknown agent: %v, want NotFound", err)
	}
	rises("a NotFound RPC counts with its code", "agora_rpc_server_requests_total", l("method", "DrainAgent", "code", "not_found"), baseBad)

	// A launch moves tasks{state="running"} on every master and the agent.
	onEach("no task runs yet", "agora_tasks", l("state", "running"), 0)
	baseAccepted, err := total("agora_offers_removed_total", l("outcome", "accepted"))
	if err != nil {
		t.Fatal(err)
	}
	baseAcceptApply, err := total("agora_raft_apply_duration_seconds", l("command", "Accept", "code", "ok"))
	if err != nil {
		t.Fatal(err)
	}
	o = sched.nextOffer(t, ctx)
	task := framework.Task("metrics-t1", o.GetAgentId(), "sleep 60", framework.Scalar("cpus", 0.1), framework.Scalar("mem", 16))
	if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(task)}, nil); err != nil {
		t.Fatalf("accept: %v", err)
	}
	onEach("the task runs, on every master's books", "agora_tasks", l("state", "running"), 1)
	onAgent("the task runs, on the agent's books", "agora_agent_tasks", l("state", "running"), func(v float64) bool { return v == 1 })
	onAgent("the agent counts the launch", "agora_agent_tasks_launched_total", nil, atLeast(1))
	rises("an accept counts", "agora_offers_removed_total", l("outcome", "accepted"), baseAccepted)
	rises("Raft apply latency counts the Accept", "agora_raft_apply_duration_seconds", l("command", "Accept", "code", "ok"), baseAcceptApply)
	rises("allocation rounds are timed", "agora_allocation_round_duration_seconds", nil, 0)
	rises("the framework's stream is open", "agora_rpc_server_in_flight", l("method", "Subscribe", "type", "server_stream"), 0)

	// A service: its pods and plan are read from its record.
	sched.done.Store(true)
	for len(sched.offers) > 0 {
		refuse := 3600.0
		_ = d.Decline(ctx, []string{(<-sched.offers).GetId()}, &refuse)
	}
	spec := `{"name":"mx","role":"mx","pods":[{"name":"p","count":1,"resources":{"cpus":0.1,"mem":16},"command":"sleep 60"}]}`
	pollScrapes(t, "run a service", func() error {
		_, err := sc.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: []byte(spec)}))
		if connect.CodeOf(err) == connect.CodeAlreadyExists {
			return nil // an earlier attempt went through
		}
		return err
	})
	onEach("the service wants its pod", "agora_service_pods_desired", l("service", "mx"), 1)
	onEach("the service's pod runs", "agora_service_pods_running", l("service", "mx"), 1)
	onEach("the service's pod is ready", "agora_service_pods_ready", l("service", "mx"), 1)
	onEach("the service's plan is complete", "agora_service_plan", l("service", "mx", "state", "complete"), 1)
	onEach("the service's plan is in no other state", "agora_service_plan", l("service", "mx", "state", "in_progress"), 0)
	onEach("two tasks run", "agora_tasks", l("state", "running"), 2)

	// A drain whose deadline passes kills the task (reason DRAINED) and
	// leaves the agent drained.
	baseDrains, err := total("agora_drains_total", l("event", "requested"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: ag.ID(),
		Deadline: timestamppb.New(time.Now().Add(500 * time.Millisecond))})); err != nil {
		t.Fatalf("drain: %v", err)
	}
	rises("a drain counts", "agora_drains_total", l("event", "requested"), baseDrains)
	rises("the drain deadline passing counts", "agora_drains_total", l("event", "deadline_passed"), 0)
	rises("the drained task counts", "agora_drained_tasks_total", nil, 0)
	onEach("the agent is drained on every master", "agora_agents", l("state", "drained"), 1)
	onEach("no task runs any more", "agora_tasks", l("state", "running"), 0)
	onAgent("the agent runs nothing", "agora_agent_tasks", l("state", "running"), func(v float64) bool { return v == 0 })

	// Raft: the leader reports both followers; every master saw a leader.
	pollScrapes(t, "the leader reports its followers' replication", func() error {
		ld := c.Leader()
		if ld == nil {
			return errors.New("no leader")
		}
		s, err := scrapeURL(ld.HTTPURL())
		if err != nil {
			return err
		}
		var followers []string
		for _, m := range s["agora_raft_follower_match_index"].GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "follower" {
					followers = append(followers, lp.GetValue())
				}
			}
			if m.GetGauge().GetValue() < 1 {
				return fmt.Errorf("follower match index %v", m.GetGauge().GetValue())
			}
		}
		sort.Strings(followers)
		if len(followers) != 2 {
			return fmt.Errorf("followers %v, want the 2 others", followers)
		}
		for _, f := range followers {
			if f == ld.ID() {
				return fmt.Errorf("the leader lists itself as a follower")
			}
			if _, ok := s.sum("agora_raft_follower_commit_lag_entries", l("follower", f)); !ok {
				return fmt.Errorf("no commit lag for %s", f)
			}
			if _, ok := s.sum("agora_raft_follower_last_contact_seconds", l("follower", f)); !ok {
				return fmt.Errorf("no last contact for %s", f)
			}
		}
		if v, _ := s.sum("agora_is_leader", nil); v != 1 {
			return fmt.Errorf("agora_is_leader = %v on the leader", v)
		}
		return nil
	})
	ss, err := all()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range ss {
		if v, _ := s.sum("agora_raft_leader_changes_total", nil); v < 1 {
			t.Errorf("master %d counted %v leader changes, want >= 1", i, v)
		}
		// Every documented master series is on every master (the
		// follower replication series only on the leader, checked above).
		for _, name := range []string{
			"agora_tasks", "agora_agents", "agora_frameworks", "agora_offers_outstanding", "agora_status_updates_unacknowledged",
			"agora_preemptions_in_force", "agora_offers_created_total", "agora_offers_removed_total", "agora_preemptions_total",
			"agora_preempted_tasks_total", "agora_drains_total", "agora_drained_tasks_total",
			"agora_allocation_round_duration_seconds", "agora_raft_leader_changes_total", "agora_gossip_members",
			"agora_is_leader", "agora_raft_applied_index", "agora_raft_commit_index", "agora_raft_last_log_index", "agora_raft_term", "agora_fsm_index",
			"agora_rpc_server_requests_total", "agora_rpc_server_request_duration_seconds", "agora_rpc_server_in_flight",
			"go_goroutines",
		} {
			if _, ok := s[name]; !ok {
				t.Errorf("master %d: no %s", i, name)
			}
		}
	}
	// Raft apply latency has series once the master has led (checked above
	// to move on the cluster).
	rises("allocation rounds' commits are timed", "agora_raft_apply_duration_seconds", l("command", "OffersCreated", "code", "ok"), 0)
	as, err := scrapeURL(agentURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agora_agent_tasks", "agora_agent_tasks_running", "agora_agent_status_updates_pending", "agora_agent_registered",
		"agora_agent_registrations_total", "agora_agent_status_updates_committed_total", "agora_rpc_client_requests_total",
		"agora_rpc_client_request_duration_seconds"} {
		if _, ok := as[name]; !ok {
			t.Errorf("agent: no %s", name)
		}
	}
}
