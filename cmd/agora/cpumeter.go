package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuMeter reads the CPU time used so far by the processes of a benchmark
// run: the masters (their process_cpu_seconds_total metric), a child
// process (/proc, Linux) and this process (getrusage).
type cpuMeter struct {
	masters []string // base URLs
	simPid  int      // 0: none
}

// cpuReading is one reading of a cpuMeter, in CPU seconds (user + system).
// A figure that could not be read is 0.
type cpuReading struct {
	masters   []float64
	sim, self float64
}

func (m cpuMeter) read(ctx context.Context) cpuReading {
	r := cpuReading{masters: make([]float64, len(m.masters))}
	for i, u := range m.masters {
		r.masters[i], _ = masterCPUSeconds(ctx, u)
	}
	if m.simPid > 0 {
		r.sim, _ = procCPUSeconds(m.simPid)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return r
}

// masterCPUSeconds reads process_cpu_seconds_total from a master's
// /metrics (within 5 s).
func masterCPUSeconds(ctx context.Context, baseURL string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", baseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics of %s: %s", baseURL, resp.Status)
	}
	return metricValue(bufio.NewScanner(resp.Body), "process_cpu_seconds_total")
}

// metricValue finds an unlabelled sample of name in a Prometheus text
// exposition.
func metricValue(sc *bufio.Scanner, name string) (float64, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading metrics: %w", err)
	}
	return 0, fmt.Errorf("no %s sample", name)
}

// procCPUSeconds reads a process's user + system time from /proc (Linux;
// an error elsewhere).
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields 14 and 15 (utime, stime) count from after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of process %d: unreadable stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of process %d: short stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of process %d: unreadable times", pid)
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return float64(ut+st) / clockTicks, nil
}
