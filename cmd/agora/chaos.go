package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agora-sched/agora/chaos"
)

func runChaos(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var lf logFlags
	lf.register(fs)
	tier := fs.String("tier", "process", "cluster driver: process (separate agora processes on 127.0.N.x) or docker (containers on a private network)")
	masters := fs.Int("masters", 3, "masters: 3 or 5")
	agents := fs.Int("agents", 2, "agents")
	simAgents := fs.Int("sim-agents", 0, "also run one `agora agent --simulate N` process with N simulated agents (process tier, not with --secure); faults never kill it")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()%1000000), "seed of the fault schedule and the workload (default: from the clock, printed)")
	duration := fs.Duration("duration", 30*time.Second, "length of the faulty part of the run")
	faults := fs.String("faults", "all", "comma-separated faults: kill-leader,kill-follower,kill-agent,pause-master,restart-master,kill-all,remove-master and, docker tier only, partition-leader,partition-minority,partition-agent")
	frameworks := fs.Int("frameworks", 3, "concurrent frameworks in the workload")
	operators := fs.Int("operators", 2, "concurrent operator clients writing and reading roles")
	asJSON := fs.Bool("json", false, "print a final JSON summary line")
	secure := fs.Bool("secure", false, "run the cluster with TLS, a gossip key, authentication, ACLs and audit logs (process tier)")
	out := fs.String("out", "", "output directory: node data and logs, history, faults, visualisations (default: a new temp dir, kept)")
	binary := fs.String("binary", "", "agora binary the nodes run (default: this executable; the docker tier needs a static one)")
	lf.level = "error"
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	allowed := chaos.ProcessKinds
	if *tier == "docker" {
		allowed = chaos.DockerKinds
	}
	kinds, err := chaos.ParseKinds(*faults, allowed)
	if err != nil {
		return err
	}
	if *binary == "" {
		if *binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find own executable: %w", err)
		}
	}
	if *out == "" {
		if *out, err = os.MkdirTemp("", fmt.Sprintf("agora-chaos-%s-%d-", *tier, *seed)); err != nil {
			return fmt.Errorf("output dir: %w", err)
		}
	}
	if abs, err := filepath.Abs(*out); err == nil {
		*out = abs
	}
	fmt.Printf("chaos: %s tier, seed %d, %s, output in %s\n", *tier, *seed, *duration, *out)
	rep, err := chaos.Run(ctx, chaos.Options{Tier: *tier, Binary: *binary, Masters: *masters, Agents: *agents,
		Seed: *seed, Duration: *duration, Faults: kinds, Frameworks: *frameworks, Operators: *operators,
		Out: *out, Progress: os.Stdout, Logger: log, Secure: *secure, SimAgents: *simAgents})
	if err != nil {
		if errors.Is(err, chaos.ErrDockerUnavailable) {
			fmt.Printf("docker tier SKIPPED: %v\n", err)
		}
		return err
	}
	fmt.Print(rep.Summary())
	if *asJSON {
		fmt.Println(rep.JSON())
	}
	if rep.ViolationCount > 0 {
		return fmt.Errorf("%d violations (details in %s)", rep.ViolationCount, *out)
	}
	return nil
}
