package clusterbench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agora-sched/agora/devcluster"
)

// E2ESize is one `agora bench e2e` run of a report: Tasks launched by
// Frameworks SDK frameworks on Agents simulated agents.
type E2ESize struct {
	Agents, Tasks, Frameworks int
	// GoalSeconds is the goal for this size (0: none).
	GoalSeconds float64
	// Anchor names a peer's figure for the same work, with its source.
	Anchor string
	// Runs is how many times the size runs (at least 1); the report shows
	// the median run and the range, since one run's time on a shared
	// machine swings with what ran before it.
	Runs int
}

// E2ERun is what `agora bench e2e --json` reports: the run's result and
// the CPU it took (the field the report shows of the rest).
type E2ERun struct {
	devcluster.E2EResult
	CPUSeconds float64 `json:"cpu_seconds"`
}

// E2E runs `binary bench e2e` at one size as a process of its own (the
// command renices itself and its load generators, which a report process
// must not) and returns its result; plot, if not empty, receives its SVG
// of tasks RUNNING over time.
func E2E(ctx context.Context, binary string, sz E2ESize, plot string) (E2ERun, error) {
	args := []string{"bench", "e2e", "--agents", fmt.Sprint(sz.Agents), "--tasks", fmt.Sprint(sz.Tasks),
		"--frameworks", fmt.Sprint(sz.Frameworks), "--json"}
	if plot != "" {
		args = append(args, "--plot", plot)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return E2ERun{}, fmt.Errorf("%s %s: %w: %s", binary, strings.Join(args, " "), err, lastLines(errOut.String(), 3))
	}
	var r E2ERun
	if err := json.Unmarshal([]byte(lastLines(out.String(), 1)), &r); err != nil {
		return E2ERun{}, fmt.Errorf("%s %s: its last line is not the JSON result: %w", binary, strings.Join(args, " "), err)
	}
	if r.Tasks != sz.Tasks || r.Agents != sz.Agents || r.Frameworks != sz.Frameworks {
		return E2ERun{}, fmt.Errorf("%s %s: ran %d tasks on %d agents with %d frameworks", binary, strings.Join(args, " "), r.Tasks, r.Agents, r.Frameworks)
	}
	return r, nil
}

// lastLines is the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		// A progress bar redraws its line with \r: keep what was drawn last.
		if i := strings.LastIndexByte(l, '\r'); i >= 0 {
			l = l[i+1:]
		}
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// e2eRow is the markdown table row of a size's runs: the median run (by
// time; of an even count, the slower middle one), with every run's time.
func e2eRow(sz E2ESize, runs []E2ERun) string {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b E2ERun) int { return cmp.Compare(a.Seconds, b.Seconds) })
	r := sorted[len(sorted)/2]
	goal, verdict, anchor := "-", "-", sz.Anchor
	if anchor == "" {
		anchor = "-"
	}
	if sz.GoalSeconds > 0 {
		goal, verdict = fmt.Sprintf("<= %g s", sz.GoalSeconds), vsGoal(r.Seconds, sz.GoalSeconds, false)
	}
	of := ""
	if len(runs) > 1 {
		times := make([]string, len(runs))
		met := 0
		for i, x := range runs {
			times[i] = fmt.Sprintf("%.2f", x.Seconds)
			if sz.GoalSeconds > 0 && x.Seconds <= sz.GoalSeconds {
				met++
			}
		}
		of = fmt.Sprintf("median of %d runs (%s s in run order", len(runs), strings.Join(times, ", "))
		if sz.GoalSeconds > 0 {
			of += fmt.Sprintf("; %d of %d within the goal", met, len(runs))
		}
		of += "): "
	}
	return fmt.Sprintf("| %d tasks, %d agents, %d frameworks | %s%.2f s (%.0f tasks/s), %d raft entries, p99 launch -> RUNNING %.0f ms, %d elections, %.1f CPU-s | %s | %s | %s |\n",
		r.Tasks, r.Agents, r.Frameworks, of, r.Seconds, r.TasksPerSec, r.RaftEntries, r.P99LaunchToRunningMs, r.Elections, r.CPUSeconds, anchor, goal, verdict)
}

// e2eSection runs every size, writes the plot of the last run into
// plotDir (as e2e-running.svg) and returns the markdown section; fail
// records a run that failed.
func e2eSection(ctx context.Context, binary string, sizes []E2ESize, plotDir, plotRef string, fail func(string, error), progress func(string, ...any)) string {
	var md strings.Builder
	md.WriteString("\n### Placement at scale (`agora bench e2e`)\n\n| run | ours | anchor (source) | goal | vs goal |\n|---|---|---|---|---|\n")
	plotted := false
	var failures []string
	for i, sz := range sizes {
		var runs []E2ERun
		n := max(sz.Runs, 1)
		for run := range n {
			plot := ""
			if i == len(sizes)-1 && run == n-1 && plotDir != "" {
				plot = filepath.Join(plotDir, "e2e-running.svg")
			}
			progress("e2e %d tasks on %d agents, run %d of %d", sz.Tasks, sz.Agents, run+1, n)
			r, err := E2E(ctx, binary, sz, plot)
			if err != nil {
				failures = append(failures, fmt.Sprintf("%d tasks on %d agents", sz.Tasks, sz.Agents))
				fail(fmt.Sprintf("agora bench e2e --agents %d --tasks %d", sz.Agents, sz.Tasks), err)
				break
			}
			progress("e2e %d tasks on %d agents: %.2f s, %.1f CPU-s", sz.Tasks, sz.Agents, r.Seconds, r.CPUSeconds)
			runs = append(runs, r)
			plotted = plotted || plot != ""
		}
		if len(runs) == n {
			md.WriteString(e2eRow(sz, runs))
		}
	}
	md.WriteString("\nCommand: `agora bench e2e --agents N --tasks T --frameworks F --json` (3 masters and one process of N simulated agents; " +
		"the time runs from the first offer until every task is RUNNING at its framework and acknowledged).\n")
	if len(failures) > 0 {
		fmt.Fprintf(&md, "\nRuns that failed: %s (see above).\n", strings.Join(failures, ", "))
	}
	if plotted {
		fmt.Fprintf(&md, "\n![tasks RUNNING over time, the last run](%s/e2e-running.svg)\n", plotRef)
	}
	return md.String()
}
