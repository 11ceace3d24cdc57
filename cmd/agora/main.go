package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of the CLI.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"master":         {"run a master (one Raft voter)", runMaster},
		"agent":          {"run an agent that registers resources and runs tasks", runAgent},
		"dev":            {"run 3 masters and 2 agents in one process on loopback", runDev},
		"status":         {"show the leader, masters, raft indexes and counts", runStatus},
		"role":           {"configure roles: role set NAME [flags], role rm NAME", runRole},
		"roles":          {"list roles", runRoles},
		"raft":           {"raft membership: raft peers|add|remove|transfer-leader|health", runRaft},
		"snapshot":       {"backup and restore: snapshot save FILE, snapshot restore FILE, snapshot inspect FILE", runSnapshot},
		"agents":         {"list agents", runAgents},
		"tasks":          {"list tasks", runTasks},
		"frameworks":     {"list frameworks", runFrameworks},
		"offers":         {"list outstanding offers", runOffers},
		"reservations":   {"list reservations and persistent volumes", runReservations},
		"run":            {"run N copies of a command through a framework (like mesos-execute)", runRun},
		"kill-framework": {"tear a framework down and kill its tasks", runKillFramework},
		"explain":        {"why a framework got no (or fewer) offers in the last round", runExplain},
		"drain":          {"drain an agent: drain AGENT [--deadline D] (tasks killed at the deadline)", runDrain},
		"undrain":        {"end an agent's drain: undrain AGENT", runUndrain},
		"bench":          {"benchmarks: bench allocator|e2e|write|state|failover|agent-loss|report", runBench},
		"sleep":          {"sleep for a duration (a static helper for test tasks)", runSleep},
		"chaos":          {"fault-injection test of a real cluster", runChaos},
		"kvservice":      {"run a replicated key-value store pod (examples/kvservice)", runKVService},
		"service":        {"stateful services: service run/list/status/scale/update/replace/remove", runService},
		"demo":           {"the whole story on an in-process cluster (make demo): a service, a batch job on slack, priority work, failures", runStory},
		"batch":          {"a batch job on slack that gives resources back: batch run, batch unit (examples/batch)", runBatch},
		"version":        {"print the version", runVersion},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func usage() {
	fmt.Fprintf(os.Stderr, "agora: a replicated cluster state store and two-level resource allocator\n\nUsage: agora COMMAND [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-15s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nClient commands take --addr URL[,URL...] (default $AGORA_ADDR or http://127.0.0.1:7100), --timeout and --json.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "agora: unknown command %q (see agora --help)\n", os.Args[1])
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "agora %s: %s\n", os.Args[1], oneLine(err))
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}
