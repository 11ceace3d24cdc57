package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agora-sched/agora/chaos"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/master"
)

// runBenchE2E runs `agora bench e2e`: separate master processes (or the
// masters of --addr) and one process of simulated agents; SDK frameworks
// in this process launch --tasks tasks, timed from the first offer until
// all are RUNNING and acknowledged.
func runBenchE2E(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench e2e", flag.ContinueOnError)
	masters := fs.Int("masters", 3, "master processes to start (3 or 5)")
	agents := fs.Int("agents", 100, "simulated agents (one separate process)")
	frameworks := fs.Int("frameworks", 1, "SDK frameworks sharing the tasks")
	tasks := fs.Int("tasks", 1000, "tasks to launch in all")
	perAccept := fs.Int("tasks-per-accept", 100, "tasks launched by one Accept at most")
	agentRes := fs.String("agent-resources", "cpus:64;mem:65536", "each simulated agent's resources")
	cpus := fs.Float64("cpus", 0.01, "cpus per task")
	mem := fs.Float64("mem", 1, "memory per task (MiB)")
	addr := fs.String("addr", "", "target the masters at these URLs instead of starting masters")
	dir := fs.String("dir", "", "directory for data and logs (default: a temporary directory, removed at the end)")
	verify := fs.Bool("verify", true, "list every task at the end and check the outcome (skipped above 100,000 tasks)")
	plot := fs.String("plot", "", "write an SVG plot of tasks RUNNING over time to this file")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	raftProfile := fs.String("raft-profile", "default", "the started masters' raft timing profile: default or fast (fast's short timeouts cause elections on a loaded 2-core machine)")
	nice := fs.Int("nice", 10, "niceness of the load generators (the simulated agents' process, and this one once the masters run), so that the masters measured run first on a shared machine; 0 keeps the priority")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of this process (the SDK frameworks) to this file while the frameworks run, and one of the simulated agents' process to this file + \".sim\"")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *agents < 1 || *tasks < 1 || *frameworks < 1 || *masters < 1 {
		return errors.New("--masters, --agents, --tasks and --frameworks must be at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own binary: %w", err)
	}
	d := *dir
	if d == "" {
		if d, err = os.MkdirTemp("", "agora-bench-e2e-"); err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		defer os.RemoveAll(d)
	}
	urls := splitList(*addr)
	if len(urls) == 0 {
		extra := []string{"--raft-profile", *raftProfile}
		// A framework may hold at most master.DefaultMaxTasksPerFramework
		// (100,000) live tasks by default, a limit that protects the
		// store from one runaway framework and stays; a bench that gives
		// a framework more raises it on the masters it starts.
		if perFramework := (*tasks + *frameworks - 1) / *frameworks; perFramework > master.DefaultMaxTasksPerFramework {
			extra = append(extra, "--max-framework-tasks", strconv.Itoa(perFramework))
		}
		c, err := chaos.NewProcessCluster(chaos.ProcessOptions{Binary: exe, Dir: d, Masters: *masters, Agents: 1,
			ExtraMasterArgs: extra})
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < *masters; i++ {
			if err := c.StartMaster(ctx, i); err != nil {
				return err
			}
		}
		urls = c.MasterURLs()
		fmt.Fprintf(os.Stderr, "masters: %s (logs in %s)\n", strings.Join(urls, " "), d)
	}
	prefix := "sim" + strconv.Itoa(os.Getpid()) + "-"
	sim := exec.Command(exe, "agent", "--simulate", strconv.Itoa(*agents), "--id", prefix, "--masters", strings.Join(urls, ","),
		"--resources", *agentRes, "--decommission", "--log-level", "warn", "--simulate-nice", strconv.Itoa(max(*nice, 0)))
	if *cpuProfile != "" {
		sim.Args = append(sim.Args, "--simulate-cpuprofile", *cpuProfile+".sim")
	}
	logf, err := os.Create(filepath.Join(d, "simulated-agents.log"))
	if err != nil {
		return fmt.Errorf("simulator log: %w", err)
	}
	defer logf.Close()
	sim.Stdout, sim.Stderr = logf, logf
	sim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := sim.Start(); err != nil {
		return fmt.Errorf("start simulated agents: %w", err)
	}
	simDone := make(chan struct{})
	go func() { _ = sim.Wait(); close(simDone) }()
	defer stopProcess(sim, simDone)

	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	lessGC() // the frameworks run in this process
	// After the masters and the simulator started: they would inherit it.
	if err := yieldCPU(*nice); err != nil {
		return fmt.Errorf("--nice: %w", err)
	}
	meter := cpuMeter{masters: urls, simPid: sim.Process.Pid}
	before := meter.read(ctx)
	bar := newProgressBar(*tasks)
	e2e, err := devcluster.RunE2E(ctx, devcluster.E2EOptions{Masters: urls, Agents: *agents, Frameworks: *frameworks, Tasks: *tasks,
		TasksPerAccept: *perAccept, CPUs: *cpus, MemMiB: *mem, Verify: *verify && *tasks <= 100_000,
		Progress: func(n, total int) { bar.set(n) }})
	bar.done()
	if err != nil {
		return err
	}
	res := e2eReport{E2EResult: e2e}
	res.cpu(before, meter.read(ctx))
	if *plot != "" {
		if err := os.WriteFile(*plot, []byte(runningSVG(res.E2EResult)), 0o644); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
	}
	if *asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("%d tasks on %d simulated agents, %d frameworks: %.2f s from the first offer to all RUNNING and acknowledged (%.0f tasks/s; all RUNNING at %.2f s), %d raft entries, p99 launch->running %.0f ms, %d elections; %.1f CPU-s\n",
		res.Tasks, res.Agents, res.Frameworks, res.Seconds, res.TasksPerSec, res.RunningSeconds, res.RaftEntries, res.P99LaunchToRunningMs, res.Elections, res.CPUSeconds)
	return nil
}

// e2eReport is what `agora bench e2e` prints: the run's result and the CPU
// it took. On a shared machine whose speed varies from hour to hour (this
// project's varied by half), the CPU seconds of a run vary less than its
// time and show where a change moved work.
type e2eReport struct {
	devcluster.E2EResult
	// CPUSeconds is the user + system CPU, while RunE2E ran, of the
	// masters, the simulated agents and this process (the frameworks):
	// the sum of the three figures below (a master that could not be read
	// counts 0).
	CPUSeconds float64 `json:"cpu_seconds"`
	// MasterCPUSeconds is each master's (process_cpu_seconds_total).
	MasterCPUSeconds []float64 `json:"master_cpu_seconds"`
	// SimCPUSeconds is the simulated agents' process's.
	SimCPUSeconds float64 `json:"sim_cpu_seconds"`
	// FrameworkCPUSeconds is this process's: the SDK frameworks.
	FrameworkCPUSeconds float64 `json:"framework_cpu_seconds"`
}

// cpu fills the CPU figures from two readings, before and after the run.
func (r *e2eReport) cpu(before, after cpuReading) {
	r.MasterCPUSeconds = make([]float64, len(after.masters))
	for i := range after.masters {
		if i < len(before.masters) && after.masters[i] >= before.masters[i] {
			r.MasterCPUSeconds[i] = after.masters[i] - before.masters[i]
		}
	}
	r.SimCPUSeconds = max(after.sim-before.sim, 0)
	r.FrameworkCPUSeconds = max(after.self-before.self, 0)
	r.CPUSeconds = r.SimCPUSeconds + r.FrameworkCPUSeconds
	for _, c := range r.MasterCPUSeconds {
		r.CPUSeconds += c
	}
}

// stopProcess stops a child with SIGTERM, and SIGKILL after 15 s.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// progressBar draws "[=====>    ] n/total RUNNING" on stderr.
type progressBar struct {
	total, last int
}

func newProgressBar(total int) *progressBar { return &progressBar{total: total, last: -1} }

func (b *progressBar) set(n int) {
	if n == b.last {
		return
	}
	b.last = n
	const width = 40
	k := width * n / max(b.total, 1)
	fmt.Fprintf(os.Stderr, "\r[%s>%s] %d/%d RUNNING", strings.Repeat("=", k), strings.Repeat(" ", width-k), n, b.total)
}

func (b *progressBar) done() {
	if b.last >= 0 {
		fmt.Fprintln(os.Stderr)
	}
}

// runningSVG plots tasks RUNNING over time (seconds since the first offer).
func runningSVG(r devcluster.E2EResult) string {
	const w, h, pad = 640.0, 360.0, 50.0
	tmax := max(r.Seconds, 1e-3)
	var pts []string
	for _, p := range r.Timeline {
		x := pad + (w-2*pad)*min(p[0]/tmax, 1)
		y := h - pad - (h-2*pad)*p[1]/float64(max(r.Tasks, 1))
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">agora bench e2e: %d tasks on %d simulated agents, %d framework(s)</text>`+"\n", pad, r.Tasks, r.Agents, r.Frameworks)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", pad, pad, pad, h-pad)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">seconds since the first offer (0 - %.2f)</text>`+"\n", w/2, h-15, tmax)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">%d</text>`+"\n", pad-5, pad+4, r.Tasks)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">0</text>`+"\n", pad-5, h-pad+4)
	fmt.Fprintf(&b, `<text x="15" y="%.0f" transform="rotate(-90 15 %.0f)" text-anchor="middle">tasks RUNNING</text>`+"\n", h/2, h/2)
	fmt.Fprintf(&b, `<polyline fill="none" stroke="steelblue" stroke-width="2" points="%s"/>`+"\n", strings.Join(pts, " "))
	b.WriteString("</svg>\n")
	return b.String()
}
