package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/agent"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/examples/demo"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/logging"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/resources"
)

// logFlags configure the process logger.
type logFlags struct {
	level string
	json  bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&l.json, "log-json", false, "log JSON lines")
}

func (l *logFlags) logger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", l.level, err)
	}
	return logging.New(os.Stderr, lv, l.json), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// masterFlags are the tuning flags shared by `agora master` and `agora dev`.
type masterFlags struct {
	cluster           string
	raftProfile       string
	agentGoneTimeout  time.Duration
	reregisterTimeout time.Duration
	agentRemovalRate  float64
	offerTimeout      time.Duration
	limits            limitFlags
	autopilot         autopilotFlags
}

func (m *masterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.cluster, "cluster", "agora", "cluster name; agents must use the same")
	fs.StringVar(&m.raftProfile, "raft-profile", "default", "raft timeouts: default (1 s heartbeat/election) or fast (600 ms)")
	fs.DurationVar(&m.agentGoneTimeout, "agent-gone-timeout", 10*time.Minute, "an unreachable agent becomes GONE after this")
	fs.DurationVar(&m.reregisterTimeout, "agent-reregister-timeout", 10*time.Minute, "an agent that stopped for a restart and has not registered again after this is marked unreachable")
	fs.Float64Var(&m.agentRemovalRate, "agent-removal-rate", 10, "at most this many agents marked unreachable per second")
	fs.DurationVar(&m.offerTimeout, "offer-timeout", 60*time.Second, "outstanding offers are rescinded after this")
	m.limits.register(fs)
	m.autopilot.register(fs)
}

func (m *masterFlags) apply(c *master.Config) {
	c.Cluster = m.cluster
	c.RaftProfile = m.raftProfile
	c.AgentGoneTimeout = m.agentGoneTimeout
	c.AgentReregisterTimeout = m.reregisterTimeout
	c.AgentRemovalRate = m.agentRemovalRate
	c.OfferTimeout = m.offerTimeout
	m.limits.apply(c)
	m.autopilot.apply(c)
}

func runMaster(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("master", flag.ContinueOnError)
	var lf logFlags
	var mf masterFlags
	lf.register(fs)
	mf.register(fs)
	id := fs.String("id", "", "master id (unique, stable across restarts)")
	dataDir := fs.String("data-dir", "", "directory for the raft log, snapshots and state")
	httpAddr := fs.String("http", "127.0.0.1:7100", "HTTP listen address (Connect, gRPC, health, metrics)")
	raftAddr := fs.String("raft", "127.0.0.1:7200", "raft TCP address")
	gossipAddr := fs.String("gossip", "127.0.0.1:7300", "gossip (serf) address")
	join := fs.String("join", "", "comma-separated gossip addresses of masters to join (may include our own)")
	expect := fs.Int("bootstrap-expect", 0, "bootstrap the raft cluster once this many masters are seen")
	profile := fs.String("gossip-profile", "lan", "gossip timing profile: lan or local")
	var sec securityFlags
	sec.register(fs)
	var af masterAuthFlags
	af.register(fs)
	if _, err := parseServerArgs(fs, args, "agora master --id ID --data-dir DIR [flags]"); err != nil {
		return err
	}
	if *id == "" || *dataDir == "" {
		return fmt.Errorf("--id and --data-dir are required (flags, AGORA_ID/AGORA_DATA_DIR or the --config file)")
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	tlsBundle, keyring, err := sec.load()
	if err != nil {
		return err
	}
	cfg := master.Config{TLS: tlsBundle, GossipKeyring: keyring, ID: *id, DataDir: *dataDir, HTTPAddr: *httpAddr, RaftAddr: *raftAddr, GossipAddr: *gossipAddr,
		Join: splitList(*join), BootstrapExpect: *expect, GossipProfile: gossip.Profile(*profile), Logger: log}
	mf.apply(&cfg)
	if err := af.apply(&cfg); err != nil {
		return err
	}
	m, err := master.New(cfg)
	if err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return err
	}
	log.Info("master running", "id", *id, "http", m.HTTPURL())
	<-ctx.Done()
	log.Info("shutting down")
	return m.Shutdown()
}

func runAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	var lf logFlags
	lf.register(fs)
	id := fs.String("id", "", "agent id (stable across restarts)")
	dataDir := fs.String("data-dir", "", "directory for sandboxes and checkpoints")
	gossipAddr := fs.String("gossip", "127.0.0.1:7400", "gossip (serf) address")
	httpAddr := fs.String("http", "", "optional HTTP address for /health and /metrics")
	join := fs.String("join", "", "comma-separated gossip addresses to join")
	res := fs.String("resources", "", "resources, e.g. 'cpus:4;mem:8192;disk:20000;gpus:0;ports:[31000-32000]' (default: from the machine)")
	attrs := fs.String("attributes", "", "attributes, e.g. 'rack:r1;zone:a'")
	profile := fs.String("gossip-profile", "lan", "gossip timing profile: lan or local")
	cluster := fs.String("cluster", "agora", "cluster name; must match the masters'")
	var sec securityFlags
	sec.register(fs)
	var token string
	tokenFlag(fs, &token)
	decommission := fs.Bool("decommission", false, "on stop (SIGTERM/SIGINT), kill the tasks and remove the agent for good; without it a stop is a restart: tasks keep running and are re-attached")
	var sf simulateFlags
	sf.register(fs)
	if _, err := parseServerArgs(fs, args, "agora agent --id ID --data-dir DIR --join ADDRS [flags]"); err != nil {
		return err
	}
	if sf.count > 0 {
		return runSimulatedAgents(ctx, sf, lf, *id, *res, *cluster, *decommission, sec)
	}
	if *id == "" || *dataDir == "" {
		return fmt.Errorf("--id and --data-dir are required (flags, AGORA_ID/AGORA_DATA_DIR or the --config file)")
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	var r resources.Resources
	if *res != "" {
		if r, err = resources.Parse(*res); err != nil {
			return fmt.Errorf("--resources: %w", err)
		}
	} else if r, err = agent.DefaultResources(*dataDir); err != nil {
		return fmt.Errorf("resources from the machine: %w", err)
	}
	at, err := agent.ParseAttributes(*attrs)
	if err != nil {
		return fmt.Errorf("--attributes: %w", err)
	}
	tlsBundle, keyring, err := sec.load()
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{TLS: tlsBundle, GossipKeyring: keyring, ID: *id, DataDir: *dataDir, GossipAddr: *gossipAddr, HTTPAddr: *httpAddr,
		Join: splitList(*join), Resources: r, Attributes: at, GossipProfile: gossip.Profile(*profile),
		Cluster: *cluster, Version: version, Logger: log, Decommission: *decommission, Token: token})
	if err != nil {
		return err
	}
	log.Info("agent starting", "id", *id, "resources", r.String())
	return a.Run(ctx)
}

// devAgents are the agents `agora dev` starts.
var devAgents = []devcluster.AgentOptions{
	{ID: "a1", Resources: "cpus:4;mem:4096;disk:10000;ports:[31000-31499]", Attributes: map[string]string{"rack": "r1"}},
	{ID: "a2", Resources: "cpus:4;mem:4096;disk:10000;ports:[31500-31999]", Attributes: map[string]string{"rack": "r2"}},
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var lf logFlags
	var mf masterFlags
	lf.register(fs)
	mf.register(fs)
	basePort := fs.Int("base-port", 7100, "master i serves HTTP on base-port+i, raft on +100+i, gossip on +200+i")
	dataDir := fs.String("data-dir", "", "data directory (default: a temporary directory, removed at exit)")
	agents := fs.Int("agents", len(devAgents), "number of agents to start (0-2)")
	withDemo := fs.Bool("demo", false, "also run a small demo framework")
	secure := fs.Bool("secure", false, "turn on TLS, gossip encryption, authentication, ACLs and audit logs, with a CA, certificates, a gossip key, tokens and an ACL file made in the data dir")
	lf.level = "warn"
	if _, err := parseServerArgs(fs, args, "agora dev [flags]"); err != nil {
		return err
	}
	if *secure && *withDemo {
		return fmt.Errorf("--demo does not run with --secure")
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	dir := *dataDir
	temporary := dir == ""
	if temporary {
		if dir, err = os.MkdirTemp("", "agora-dev-"); err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	if mf.raftProfile == "default" {
		mf.raftProfile = "fast"
	}
	opts := devcluster.Options{Masters: 3, BasePort: *basePort, DataDir: dir,
		GossipProfile: gossip.Profile("local"), RaftProfile: mf.raftProfile, Logger: log,
		MasterConfig: func(cfg *master.Config) { mf.apply(cfg); cfg.RaftProfile = mf.raftProfile }}
	var sec *devSecure
	if *secure {
		var ids []string
		for _, a := range devAgents {
			ids = append(ids, a.ID)
		}
		if sec, err = newDevSecure(dir, ids); err != nil {
			return err
		}
		opts.TLS, opts.GossipKeyring, opts.Auth = true, sec.keyring, sec.auth
	}
	c, err := devcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	leader, err := c.WaitLeader(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("no leader: %w", err)
	}
	fmt.Printf("masters: %s (data in %s)\n", strings.Join(c.Addrs(), " "), dir)
	for i := 0; i < *agents && i < len(devAgents); i++ {
		if _, err := c.StartAgent(ctx, devAgents[i]); err != nil {
			return fmt.Errorf("agent %s: %w", devAgents[i].ID, err)
		}
		fmt.Printf("agent %s: %s\n", devAgents[i].ID, devAgents[i].Resources)
	}
	if sec != nil {
		if err := sec.print(os.Stdout, c); err != nil {
			return err
		}
	}
	fmt.Printf("ready %s\n", leader.HTTPURL())
	if *withDemo {
		go func() {
			if err := demo.Run(ctx, c.Addrs(), os.Stdout); err != nil && ctx.Err() == nil {
				log.Error("demo framework ended", "err", err)
			}
		}()
	}
	<-ctx.Done()
	fmt.Println("stopping")
	if temporary {
		// The sandboxes go with the temporary directory: stop the tasks
		// rather than orphan them. With --data-dir the agents stop for a
		// restart and a later `agora dev --data-dir` re-attaches to them.
		c.DecommissionAgents()
	}
	return nil
}

func runSleep(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: agora sleep DURATION (e.g. 10s or 10)")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		secs, err2 := strconv.ParseFloat(args[0], 64)
		if err2 != nil {
			return fmt.Errorf("bad duration %q: %w", args[0], err)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return nil
}
