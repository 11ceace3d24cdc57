package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/clusterbench"
)

// benchCommands are the `agora bench` subcommands besides allocator.
var benchCommands = map[string]func(ctx context.Context, args []string) error{
	"write":      runBenchWrite,
	"state":      runBenchState,
	"failover":   runBenchFailover,
	"agent-loss": runBenchAgentLoss,
	"report":     runBenchReport,
}

const benchUsage = `       agora bench e2e [--masters 3] --agents N [--frameworks F] --tasks T [--json] [--plot FILE.svg]
       agora bench write [--writers W] [--duration D] [--raft-profile P] [--json]
       agora bench state --agents N --tasks T [--skip-catchup] [--json]
       agora bench failover --rounds R [--raft-profile default|fast] [--json]
       agora bench agent-loss --agents N --rounds R [--json]
       agora bench report [--out BENCHMARKS.md] [--plots docs/bench] [--quick]`

// printBenchResult prints r as one JSON line (--json) or as text.
func printBenchResult(asJSON bool, r any, text string) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		fmt.Println(string(b))
		return nil
	}
	fmt.Println(text)
	return nil
}

func runBenchWrite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench write", flag.ContinueOnError)
	writers := fs.Int("writers", 64, "concurrent writers")
	duration := fs.Duration("duration", 5*time.Second, "measuring time per side")
	profile := fs.String("raft-profile", "default", "raft profile of both sides: default or fast")
	dir := fs.String("dir", "", "data directory (default: a temporary one)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the Connect phase to this file")
	conns := fs.Int("conns", 1, "client connections the Connect writers share (as writers on separate machines would)")
	inFlight := fs.Int("writes-in-flight", 0, "SetRole RPCs each client keeps in flight before it carries further concurrent calls together in one SetRoles RPC (0: the client's default; -1: every call its own RPC)")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *writers < 1 || *duration <= 0 {
		return fmt.Errorf("--writers must be at least 1 and --duration positive")
	}
	o := clusterbench.WriteOptions{Writers: *writers, Conns: *conns, WritesInFlight: *inFlight, Duration: *duration, RaftProfile: *profile, Dir: *dir, Progress: os.Stderr}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		o.ConnectProfile = f
	}
	r, err := clusterbench.Write(ctx, o)
	if err != nil {
		return err
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d writes through the Connect API failed", r.Errors)
	}
	return printBenchResult(*asJSON, r, fmt.Sprintf("writes/s: Connect API %.0f (%d log entries), Master.Apply %.0f (%d log entries), bare raft %.0f (one entry per write); ratio %.2f; %s; %s",
		r.AgoraWritesPerSec, r.AgoraLogEntries, r.ApplyWritesPerSec, r.ApplyLogEntries, r.RaftWritesPerSec, r.Ratio, r.Batching, r.ClientBatching))
}

func runBenchState(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench state", flag.ContinueOnError)
	agents := fs.Int("agents", 10000, "agents in the state")
	tasks := fs.Int("tasks", 1000000, "RUNNING tasks in the state (at most 128 per agent)")
	skip := fs.Bool("skip-catchup", false, "do not measure a follower's catch-up (no cluster)")
	dir := fs.String("dir", "", "directory for the snapshot and the cluster (default: a temporary one)")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *agents < 1 || *tasks < 0 {
		return fmt.Errorf("--agents must be at least 1 and --tasks not negative")
	}
	r, err := clusterbench.State(ctx, clusterbench.StateOptions{Agents: *agents, Tasks: *tasks, SkipCatchup: *skip, Dir: *dir, Progress: os.Stderr})
	if err != nil && r.CatchupError == "" {
		return err
	}
	if err != nil {
		// The other figures stand: print them, then fail.
		if perr := printBenchResult(*asJSON, r, fmt.Sprintf("%d agents, %d tasks: RSS %.0f MiB, heap %.0f MiB, snapshot %.1f MiB in %.2f s, restore %.2f s",
			r.Agents, r.Tasks, r.RSSMiB, r.HeapMiB, r.SnapshotMiB, r.SnapshotS, r.RestoreS)); perr != nil {
			return perr
		}
		return err
	}
	return printBenchResult(*asJSON, r, fmt.Sprintf("%d agents, %d tasks: RSS %.0f MiB, heap %.0f MiB, snapshot %.1f MiB in %.2f s, restore %.2f s, catch-up %.2f s",
		r.Agents, r.Tasks, r.RSSMiB, r.HeapMiB, r.SnapshotMiB, r.SnapshotS, r.RestoreS, r.CatchupS))
}

func selfBinary(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return self, nil
}

func runBenchFailover(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench failover", flag.ContinueOnError)
	rounds := fs.Int("rounds", 5, "leader kills")
	profile := fs.String("raft-profile", "default", "raft profile: default or fast")
	binary := fs.String("binary", "", "agora binary the nodes run (default: this executable)")
	dir := fs.String("dir", "", "node data and logs (default: a temporary directory, removed)")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("--rounds must be at least 1")
	}
	if *profile != "default" && *profile != "fast" {
		return fmt.Errorf("--raft-profile must be default or fast, not %q", *profile)
	}
	bin, err := selfBinary(*binary)
	if err != nil {
		return err
	}
	r, err := clusterbench.Failover(ctx, clusterbench.FailoverOptions{Binary: bin, Rounds: *rounds, RaftProfile: *profile, Dir: *dir, Progress: os.Stderr})
	if err != nil {
		return err
	}
	if r.OldOfferAccepted != r.Rounds {
		return fmt.Errorf("the offer made before the kill was accepted in %d of %d rounds", r.OldOfferAccepted, r.Rounds)
	}
	return printBenchResult(*asJSON, r, fmt.Sprintf("%d rounds (%s): write committed p50 %.0f / p99 %.0f ms, first OFFERS p50 %.0f / p99 %.0f ms, old offer accepted %d/%d (p50 %.0f ms); bare raft p50 %.0f / p99 %.0f ms",
		r.Rounds, r.Profile, r.LeaderP50Ms, r.LeaderP99Ms, r.OffersP50Ms, r.OffersP99Ms, r.OldOfferAccepted, r.Rounds, r.AcceptP50Ms, r.BareRaftP50Ms, r.BareRaftP99Ms))
}

func runBenchAgentLoss(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench agent-loss", flag.ContinueOnError)
	agents := fs.Int("agents", 10, "agents (separate processes)")
	rounds := fs.Int("rounds", 3, "agents killed, one per round (at most --agents)")
	binary := fs.String("binary", "", "agora binary the nodes run (default: this executable)")
	dir := fs.String("dir", "", "node data and logs (default: a temporary directory, removed)")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *agents < 1 || *rounds < 1 || *rounds > *agents {
		return fmt.Errorf("--agents and --rounds must be at least 1 and --rounds at most --agents")
	}
	bin, err := selfBinary(*binary)
	if err != nil {
		return err
	}
	r, err := clusterbench.AgentLoss(ctx, clusterbench.AgentLossOptions{Binary: bin, Agents: *agents, Rounds: *rounds, Dir: *dir, Progress: os.Stderr})
	if err != nil {
		return err
	}
	return printBenchResult(*asJSON, r, fmt.Sprintf("%d agents, %d rounds: RESCIND p50 %.0f / p99 %.0f ms, UNREACHABLE p50 %.0f / p99 %.0f ms",
		r.Agents, r.Rounds, r.RescindP50Ms, r.RescindP99Ms, r.UnreachableP50Ms, r.UnreachableP99Ms))
}

func runBenchIncremental(agents, frameworks, rounds int, seed uint64, asJSON bool) error {
	if agents < 1 || frameworks < 1 {
		return fmt.Errorf("--agents and --frameworks must be at least 1")
	}
	fmt.Fprintf(os.Stderr, "bench allocator: %d agents x %d frameworks: one full round, then %d agents freed one at a time\n", agents, frameworks, rounds)
	r, err := allocator.BenchIncremental(agents, frameworks, rounds, seed)
	if err != nil {
		return err
	}
	return printBenchResult(asJSON, r, fmt.Sprintf("agents %d, frameworks %d: full round %.2f ms; one agent freed: p50 %.3f ms, p99 %.3f ms (%d of %d on the one-agent path)",
		r.Agents, r.Frameworks, r.FullRoundMs, r.FreedMsP50, r.FreedMsP99, r.FastRounds, r.Rounds))
}

func runBenchReport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	out := fs.String("out", "BENCHMARKS.md", "markdown file whose generated section is rewritten (\"-\": print it)")
	plots := fs.String("plots", "docs/bench", "directory for the SVG plots, relative to --out's directory")
	quick := fs.Bool("quick", false, "tiny sizes: checks that the report is whole; figures not worth publishing")
	binary := fs.String("binary", "", "agora binary the process-tier benchmarks run (default: this executable)")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	bin, err := selfBinary(*binary)
	if err != nil {
		return err
	}
	base := "."
	if *out != "-" {
		base = filepath.Dir(*out)
	}
	md, runErr := clusterbench.Report(ctx, clusterbench.ReportOptions{Binary: bin, Quick: *quick, PlotDir: filepath.Join(base, *plots),
		PlotRef: filepath.ToSlash(*plots), Progress: os.Stderr})
	if md == "" {
		return runErr
	}
	if *out == "-" {
		fmt.Print(md)
		return runErr
	}
	doc, err := os.ReadFile(*out)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", *out, err)
	}
	next := clusterbench.ReplaceSection(string(doc), "## Performance at scale (issue 13): `make bench`", md)
	if err := os.WriteFile(*out, []byte(next), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Printf("wrote %s and the plots in %s\n", *out, filepath.Join(base, *plots))
	if runErr != nil {
		return fmt.Errorf("some benchmarks failed (reported in %s): %w", *out, runErr)
	}
	return nil
}
