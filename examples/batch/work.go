package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// levels of the generated log lines, and how often each appears (of 100).
var levels = []struct {
	name   string
	weight int
}{{"INFO", 80}, {"WARN", 15}, {"ERROR", 5}}

// Line returns line j of unit u's generated log file.
func Line(u, j int, r *rand.Rand) string {
	x := r.IntN(100)
	lvl := levels[len(levels)-1].name
	for _, l := range levels {
		if x < l.weight {
			lvl = l.name
			break
		}
		x -= l.weight
	}
	return fmt.Sprintf("2026-12-04T00:00:%02d unit=%d line=%d %s request served in %dms", j%60, u, j, lvl, r.IntN(500))
}

// unitRand is unit u's generator: a seed from u alone, so every run of
// the unit, anywhere, sees the same file.
func unitRand(u int) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "agora-batch-unit-%d", u)
	s := h.Sum64()
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// Count counts the ERROR lines of unit u's file of lines lines: the work
// of one task.
func Count(u, lines int) int64 {
	r := unitRand(u)
	var n int64
	for j := range lines {
		if bytes.Contains([]byte(Line(u, j, r)), []byte(" ERROR ")) {
			n++
		}
	}
	return n
}

// Expected is the job's exact answer for units units of lines lines,
// computed locally: what tests and the demo check the job's result
// against.
func Expected(units, lines int) int64 {
	var sum int64
	for u := range units {
		sum += Count(u, lines)
	}
	return sum
}

// Report is what a unit's task posts to the framework.
type Report struct {
	Unit  int    `json:"unit"`
	Count int64  `json:"count"`
	Task  string `json:"task,omitempty"`
}

// UnitConfig configures one unit's task (RunUnit).
type UnitConfig struct {
	Unit  int
	Lines int
	// ReportURL is the framework's endpoint for results.
	ReportURL string
	// Work, if > 0, is how long the unit takes at least: the file is
	// counted in steps spread over it, so a demo's tasks live long
	// enough to be preempted.
	Work time.Duration
	// TaskID names the task in the report (from $AGORA_TASK_ID).
	TaskID string
}

// RunUnit does one unit's work and reports it; it returns nil only once
// the framework answered that the result is recorded.
func RunUnit(ctx context.Context, cfg UnitConfig) error {
	if cfg.Unit < 0 || cfg.Lines <= 0 || cfg.ReportURL == "" {
		return errors.New("batch unit: --unit >= 0, --lines > 0 and --report are required")
	}
	if cfg.Work > 0 {
		t := time.NewTimer(cfg.Work)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	rep := Report{Unit: cfg.Unit, Count: Count(cfg.Unit, cfg.Lines), Task: cfg.TaskID}
	body, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("batch unit: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, cfg.ReportURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("batch unit: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("batch unit %d: report: %w", cfg.Unit, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("batch unit %d: report answered %s: %s", cfg.Unit, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
