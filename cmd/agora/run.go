package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/examples/execute"
)

func runRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	name := fs.String("name", "", "framework and task name prefix")
	cmd := fs.String("cmd", "", "shell command each task runs")
	instances := fs.Int("instances", 1, "number of tasks")
	cpus := fs.Float64("cpus", 0.1, "cpus per task")
	mem := fs.Float64("mem", 32, "memory per task (MiB)")
	role := fs.String("role", "*", "role to register with")
	principal := fs.String("principal", "", "principal of the framework")
	failover := fs.Duration("failover-timeout", time.Hour, "how long tasks survive a disconnected framework")
	detach := fs.Bool("detach", false, "exit once all tasks are RUNNING, leaving the framework registered")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *name == "" || *cmd == "" {
		return fmt.Errorf("--name and --cmd are required")
	}
	if *instances < 1 {
		return fmt.Errorf("--instances must be at least 1")
	}
	return execute.Run(ctx, execute.Options{Masters: cf.masters(), Name: *name, Cmd: *cmd, Instances: *instances,
		CPUs: *cpus, MemMiB: *mem, Role: *role, Principal: *principal, FailoverTimeout: *failover, Detach: *detach, Out: os.Stdout,
		TLS: cf.tls.files, Cluster: cf.tls.cluster, Token: cf.token})
}

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "e2e" {
		return runBenchE2E(ctx, args[1:])
	}
	if len(args) > 0 {
		if run, ok := benchCommands[args[0]]; ok {
			return run(ctx, args[1:])
		}
	}
	if len(args) == 0 || args[0] != "allocator" {
		fmt.Fprintln(os.Stderr, "usage: agora bench allocator --agents N --frameworks M [--rounds R] [--incremental] [--json]")
		fmt.Fprintln(os.Stderr, benchUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("bench allocator", flag.ContinueOnError)
	agents := fs.Int("agents", 10000, "agents")
	frameworks := fs.Int("frameworks", 1000, "frameworks")
	rounds := fs.Int("rounds", 20, "allocation rounds to time")
	seed := fs.Uint64("seed", 1, "seed")
	asJSON := fs.Bool("json", false, "print JSON")
	incremental := fs.Bool("incremental", false, "time the one-agent-freed path (allocator.Incremental) after a full round")
	if _, err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if *incremental {
		return runBenchIncremental(*agents, *frameworks, *rounds, *seed, *asJSON)
	}
	fmt.Fprintf(os.Stderr, "bench allocator: %d agents x %d frameworks, %d full rounds\n", *agents, *frameworks, *rounds)
	r := allocator.Bench(*agents, *frameworks, *rounds, *seed)
	if *asJSON {
		return printBenchResult(true, map[string]any{"agents": r.Agents, "frameworks": r.Frameworks,
			"cycle_ms_p50": r.CycleMsP50, "cycle_ms_p99": r.CycleMsP99, "offers_per_cycle": r.OffersPerCycle}, "")
	}
	fmt.Printf("agents %d, frameworks %d: cycle p50 %.2f ms, p99 %.2f ms, %d offers per cycle\n",
		r.Agents, r.Frameworks, r.CycleMsP50, r.CycleMsP99, r.OffersPerCycle)
	return nil
}
