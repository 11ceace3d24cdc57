package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// yieldCPU lowers the scheduling priority of every thread of this process
// to niceness n (Linux applies nice per thread; threads started later
// inherit their creator's). Load generators call it so that, on the one
// machine a benchmark shares with the masters it measures, the kernel runs
// the masters first: in a real cluster agents and frameworks run on other
// machines. n <= 0 leaves the priority as it is.
func yieldCPU(n int) error {
	if n <= 0 {
		return nil
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("lower priority: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && err != syscall.ESRCH {
			return fmt.Errorf("lower priority of thread %d: %w", tid, err)
		}
	}
	return nil
}
