package realservices

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agora-sched/agora/service"
)

// publisher publishes to a stream until stopped, one message at a time,
// each retried with its message id until acknowledged, and records every
// acknowledgement and the longest time between two of them.
type publisher struct {
	js      jetstream.JetStream
	subject string

	mu      sync.Mutex
	acked   map[string]uint64 // message id -> stream sequence
	lastAck time.Time
	gap     time.Duration // longest time without an ack
	gapEnd  time.Time
	errs    int
	lastErr error
	lat     []latency // every acknowledged publish call
}

// latency is one acknowledged publish call: when it was acknowledged and
// how long the call took.
type latency struct {
	at time.Time
	d  time.Duration
}

func (p *publisher) run(ctx context.Context) {
	p.lastAck = time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("m%06d", i)
		for ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			sent := time.Now()
			ack, err := p.js.Publish(pctx, p.subject, []byte(id), jetstream.WithMsgID(id))
			cancel()
			now := time.Now()
			p.mu.Lock()
			if err == nil {
				p.acked[id] = ack.Sequence
				p.lat = append(p.lat, latency{at: now, d: now.Sub(sent)})
				if g := now.Sub(p.lastAck); g > p.gap {
					p.gap, p.gapEnd = g, now
				}
				p.lastAck = now
				p.mu.Unlock()
				break
			}
			p.errs++
			p.lastErr = err
			p.mu.Unlock()
			if !errors.Is(err, context.DeadlineExceeded) {
				time.Sleep(50 * time.Millisecond) // back off a refused publish; the retry keeps its id
			}
		}
	}
}

// count returns how many messages were acknowledged.
func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// latencies returns the p50 and p99 of the publish calls acknowledged
// in [from, to), and how many there were.
func (p *publisher) latencies(from, to time.Time) (p50, p99 time.Duration, n int) {
	p.mu.Lock()
	var ds []time.Duration
	for _, l := range p.lat {
		if !l.at.Before(from) && l.at.Before(to) {
			ds = append(ds, l.d)
		}
	}
	p.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))] }
	return q(0.50), q(0.99), len(ds)
}

// waitMore waits until n more messages than now are acknowledged: the
// stream takes writes again.
func (p *publisher) waitMore(t *testing.T, what string, n int) {
	t.Helper()
	from := p.count()
	poll(t, "publishing after "+what, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.acked) >= from+n, fmt.Sprintf("%d acked since, %d errors, last %v", len(p.acked)-from, p.errs, p.lastErr)
	})
}

// TestNATSJetStream: a 3-pod NATS JetStream cluster; a 3-replica stream
// takes acknowledged publishes without a pause of the test while the
// service scales to 5, the agent of the stream leader's pod dies with its
// task (a machine crash) and comes back, and the leader master is killed.
// At the end every acknowledged message is in the stream at its sequence.
func TestNATSJetStream(t *testing.T) {
	requireBinaries(t, "nats-server")
	start := time.Now()
	c := startCluster(t, 5) // one_per agent: 5 pods need 5 agents
	c.run(specPath("nats.json"))
	st := c.waitComplete("nats", 3)
	t.Logf("3 pods ready after %s", time.Since(start).Round(time.Millisecond))
	var urls []string
	for _, p := range st.Pods {
		urls = append(urls, "nats://"+p.Address)
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const streamName = "EVENTS"
	var stream jetstream.Stream
	poll(t, "stream with 3 replicas created", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: streamName, Subjects: []string{"events.>"}, Replicas: 3, Storage: jetstream.FileStorage,
			Duplicates: 5 * time.Minute,
		})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})

	pub := &publisher{js: js, subject: "events.a", acked: map[string]uint64{}}
	pctx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.run(pctx) }()
	defer func() { stopPub(); <-pubDone }()
	pubStart := time.Now()
	pub.waitMore(t, "start", 200)

	// Scale to 5 while publishing: the 3 first pods keep their tasks.
	before := map[string]string{}
	for _, p := range st.Pods {
		before[p.Name] = p.TaskID
	}
	t0 := time.Now()
	c.agora("service", "scale", "nats", "5")
	st = c.waitComplete("nats", 5)
	for _, p := range st.Pods {
		if id, ok := before[p.Name]; ok && p.TaskID != id {
			t.Fatalf("scale restarted %s: task %s -> %s", p.Name, id, p.TaskID)
		}
	}
	t1 := time.Now()
	t.Logf("scaled 3 -> 5 in %s", t1.Sub(t0).Round(time.Millisecond))
	b50, b99, bn := pub.latencies(pubStart, t0)
	d50, d99, dn := pub.latencies(t0, t1)
	t.Logf("publish latency before the scale p50 %s p99 %s (%d publishes); during it p50 %s p99 %s (%d publishes)",
		b50, b99, bn, d50, d99, dn)
	// The new servers joined the JetStream cluster (they learnt the early
	// pods' routes; the early pods never learn theirs from agora): a stream
	// with 5 replicas fits.
	poll(t, "a 5-replica stream fits", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s5, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R5", Subjects: []string{"r5"}, Replicas: 5, Storage: jetstream.FileStorage})
		if err != nil {
			return false, err.Error()
		}
		info, err := s5.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.Cluster != nil && len(info.Cluster.Replicas) == 4, fmt.Sprintf("%+v", info.Cluster)
	})
	poll(t, "the 5-replica stream deleted", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := js.DeleteStream(ctx, "R5")
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return false, err.Error() // a lost request: sent again
		}
		return true, ""
	})
	pub.waitMore(t, "the scale", 200)

	// The agent of the stream leader's pod crashes with its task: the
	// agent is killed, the task SIGKILLed, then the agent restarts on its
	// data dir and the pod is relaunched in place.
	leader := streamLeader(t, stream)
	var victim service.PodStatus
	for _, p := range st.Pods {
		if p.Name == leader {
			victim = p
		}
	}
	if victim.Name == "" {
		t.Fatalf("stream leader %q is not a pod of %+v", leader, st.Pods)
	}
	t0 = time.Now()
	if err := c.c.KillAgent(victim.AgentID); err != nil {
		t.Fatal(err)
	}
	killTask(t, victim.TaskID)
	t.Logf("killed agent %s and stream leader %s (task %s)", victim.AgentID, victim.Name, victim.TaskID)
	pub.waitMore(t, "the stream leader's crash", 200)
	t.Logf("stream takes writes %s after the crash (new leader %s)", time.Since(t0).Round(time.Millisecond), streamLeader(t, stream))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	if _, err := c.c.RestartAgent(ctx, victim.AgentID); err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	poll(t, victim.Name+" relaunched in place", func() (bool, string) {
		s, err := c.status("nats")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range s.Pods {
			if p.Name != victim.Name {
				continue
			}
			if p.AgentID != victim.AgentID || p.Address != victim.Address || p.VolumeID != victim.VolumeID {
				t.Fatalf("%s moved: %+v, was %+v", p.Name, p, victim)
			}
			return p.TaskID != victim.TaskID && p.Ready && p.State == "RUNNING" && s.Plan.State == service.PlanComplete, fmt.Sprintf("%+v plan %s %s", p, s.Plan.State, s.Plan.Step)
		}
		return false, "pod gone"
	})
	t.Logf("%s relaunched in place %s after the crash", victim.Name, time.Since(t0).Round(time.Millisecond))
	pub.waitMore(t, "the relaunch", 200)

	// Kill the leader master: the service stays complete under the new one.
	old := c.c.LeaderIndex()
	if old < 0 {
		t.Fatal("no leader master")
	}
	t0 = time.Now()
	c.c.Kill(old)
	poll(t, "a new leader master", func() (bool, string) {
		i := c.c.LeaderIndex()
		return i >= 0 && i != old, fmt.Sprintf("leader %d", i)
	})
	c.waitComplete("nats", 5)
	t.Logf("new leader master, service complete, %s after the kill", time.Since(t0).Round(time.Millisecond))
	pub.waitMore(t, "the master kill", 200)

	stopPub()
	<-pubDone
	pub.mu.Lock()
	t.Logf("published %d acknowledged messages (%d failed attempts, last %v); longest publish outage %s, ended %s after the test started",
		len(pub.acked), pub.errs, pub.lastErr, pub.gap.Round(time.Millisecond), pub.gapEnd.Sub(start).Round(time.Millisecond))
	if pub.gap > 60*time.Second {
		t.Errorf("longest publish outage %s is over 60s", pub.gap)
	}
	acked := pub.acked
	pub.mu.Unlock()
	checkStream(t, js, stream, acked)
}

// streamLeader names the server leading the stream (a pod name), waiting
// for one to be elected.
func streamLeader(t *testing.T, s jetstream.Stream) string {
	t.Helper()
	var leader string
	poll(t, "a stream leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := s.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return false, "no leader"
		}
		leader = info.Cluster.Leader
		return true, ""
	})
	return leader
}

// checkStream reads the whole stream with an ordered consumer and checks
// that every acknowledged message is there, at the sequence its ack named.
func checkStream(t *testing.T, js jetstream.JetStream, s jetstream.Stream, acked map[string]uint64) {
	t.Helper()
	var last uint64
	poll(t, "stream info", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := s.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		last = info.State.LastSeq
		return true, ""
	})
	bySeq := map[uint64]string{}
	// A JetStream API call is a core NATS request: at most once. Its
	// request or reply can be lost while routes reconnect after the
	// crash (the CI run that waited on one request for 120 s), so each
	// attempt has its own deadline and a lost one is sent again.
	var cons jetstream.Consumer
	poll(t, "an ordered consumer", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		cons, err = js.OrderedConsumer(ctx, s.CachedInfo().Config.Name, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Logf("ordered consumer: %v (connected to %s); trying again", err, js.Conn().ConnectedServerName())
			return false, err.Error()
		}
		return true, ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for uint64(len(bySeq)) < last && ctx.Err() == nil {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Logf("fetch: %v", err)
			continue
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			bySeq[md.Sequence.Stream] = string(m.Data())
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Logf("fetch batch: %v", err)
		}
	}
	missing := 0
	for id, seq := range acked {
		if bySeq[seq] != id {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged %s at sequence %d; the stream holds %q there", id, seq, bySeq[seq])
			}
		}
	}
	t.Logf("stream: %d messages read, last sequence %d; %d of %d acknowledged messages missing", len(bySeq), last, missing, len(acked))
	if missing > 0 {
		t.Fatalf("%d acknowledged messages are not in the stream", missing)
	}
}
