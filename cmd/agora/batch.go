package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/agora-sched/agora/examples/batch"
)

const batchUsage = `Usage:
  agora batch run [--units N] [--lines L] [--role batch] [--work D] [--revocable] [--framework-id ID] [--json]
      run a batch job (examples/batch) to the end: counts the ERROR lines of N generated
      log files, one short task per file, rerunning any unit whose task was preempted,
      drained or lost; prints progress, then the exact answer
  agora batch unit --unit I --lines L --report URL [--work D]
      one unit's task (what the job launches)`

// runBatch dispatches the batch subcommands.
func runBatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, batchUsage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runBatchRun(ctx, args[1:])
	case "unit":
		return runBatchUnit(ctx, args[1:])
	}
	return fmt.Errorf("unknown batch subcommand %q (want run or unit)", args[0])
}

func runBatchRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("batch run", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	units := fs.Int("units", 100, "work units (log files) of the job")
	lines := fs.Int("lines", 20000, "lines of each unit's log file")
	role := fs.String("role", "batch", "role the job runs under")
	name := fs.String("name", "batch", "framework name")
	work := fs.Duration("work", 0, "least time each unit's task takes")
	revocable := fs.Bool("revocable", true, "subscribe with the revocable-resources capability")
	fid := fs.String("framework-id", "", "resubscribe as this framework: a restarted job keeps its recorded units")
	cpus := fs.Float64("cpus", 0.1, "cpus of each unit's task")
	mem := fs.Float64("mem", 32, "mem (MB) of each unit's task")
	listen := fs.String("listen", "127.0.0.1:0", "where the job serves its tasks' reports")
	advertise := fs.String("advertise", "", "host:port the tasks reach the job at (default the listener's)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("batch run: unexpected argument %q", pos[0])
	}
	if *units <= 0 || *lines <= 0 {
		return fmt.Errorf("batch run: --units and --lines must be > 0")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("batch run: finding the agora binary for the tasks: %w", err)
	}
	out := os.Stdout
	if cf.json {
		out = os.Stderr
	}
	job, err := batch.New(batch.Config{
		Masters: cf.masters(), Name: *name, Role: *role, FrameworkID: *fid, Revocable: *revocable,
		Units: *units, Lines: *lines, CPUs: *cpus, Mem: *mem, Work: *work, Listen: *listen, Advertise: *advertise,
		Command: func(unit, lines int, url string, work time.Duration) string {
			return fmt.Sprintf("exec %s batch unit --unit %d --lines %d --report %s --work %s", strconv.Quote(self), unit, lines, url, work)
		},
		Out: out,
	})
	if err != nil {
		return err
	}
	res, err := job.Run(ctx)
	if err != nil {
		return err
	}
	if cf.json {
		b, _ := json.Marshal(map[string]any{"framework_id": res.FrameworkID, "units": res.Units, "total": res.Total,
			"launched": res.Launched, "preemptions": res.Preemptions, "reruns": res.Reruns, "seconds": res.Elapsed.Seconds()})
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("%d ERROR lines in %d units (%d tasks, %d preempted, %d reruns) in %s\n",
		res.Total, res.Units, res.Launched, res.Preemptions, res.Reruns, res.Elapsed.Round(time.Millisecond))
	return nil
}

func runBatchUnit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("batch unit", flag.ContinueOnError)
	unit := fs.Int("unit", -1, "the unit's index")
	lines := fs.Int("lines", 0, "lines of the unit's log file")
	report := fs.String("report", "", "the job's report URL")
	work := fs.Duration("work", 0, "least time the unit takes")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	return batch.RunUnit(ctx, batch.UnitConfig{Unit: *unit, Lines: *lines, ReportURL: *report, Work: *work, TaskID: os.Getenv("AGORA_TASK_ID")})
}
