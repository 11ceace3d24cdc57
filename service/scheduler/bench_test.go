package scheduler_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/devcluster"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestServiceBench measures, for BENCHMARKS.md, over AGORA_SERVICE_BENCH
// runs (skipped when unset):
//
//   - `agora service scale kvservice 5` from 3 pods until both new pods
//     are ready (fresh placements: each run scales back to 3 with --purge
//     and waits for the reservations to be released);
//
//   - a pod's task SIGKILLed until the pod is RUNNING and ready again in
//     place.
//
//     AGORA_SERVICE_BENCH=10 go test -count=1 -run TestServiceBench -v ./service/scheduler/
func TestServiceBench(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("AGORA_SERVICE_BENCH"))
	if runs <= 0 {
		t.Skip("set AGORA_SERVICE_BENCH=N to run the service scheduler benchmark")
	}
	e := startE2E(t, 3)
	ctx := context.Background()
	addr := strings.Join(e.c.Addrs(), ",")
	var scale, relaunch []time.Duration
	for i := 0; i < runs; i++ {
		// A fresh service (and role) each run, so every scale places new
		// pods; it is removed with --purge afterwards.
		name := fmt.Sprintf("kvb%d", i)
		run, err := e.cl.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: namedKVSpec(name, e.bin, 3, "1")}))
		if err != nil {
			t.Fatal(err)
		}
		fid := run.Msg.GetFrameworkId()
		t.Cleanup(func() {
			for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + fid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		e.waitComplete(name, 3)
		start := time.Now()
		if out, err := exec.Command(e.bin, "service", "scale", "--addr", addr, name, "5").CombinedOutput(); err != nil {
			t.Fatalf("scale: %v %s", err, out)
		}
		st := e.waitComplete(name, 5)
		scale = append(scale, time.Since(start))

		victim := st.Pods[2]
		start = time.Now()
		for _, pid := range devcluster.PIDsWithEnv("AGORA_TASK_ID=" + victim.TaskID) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		e.poll("relaunch in place", func() (bool, string) {
			s, _, err := e.status(name)
			if err != nil {
				return false, err.Error()
			}
			p := s.Pods[2]
			return p.TaskID != victim.TaskID && p.State == "RUNNING" && p.Ready && p.AgentID == victim.AgentID, fmt.Sprintf("%+v", p)
		})
		relaunch = append(relaunch, time.Since(start))
		if out, err := exec.Command(e.bin, "service", "remove", "--addr", addr, "--purge", name).CombinedOutput(); err != nil {
			t.Fatalf("remove: %v %s", err, out)
		}
	}
	t.Logf("scale 3 -> 5 until ready (%d runs): %s", runs, percentiles(scale))
	t.Logf("task killed -> RUNNING and ready in place (%d runs): %s", runs, percentiles(relaunch))
}

func percentiles(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)].Round(time.Millisecond)
	}
	return fmt.Sprintf("p50 %s, p99 %s, min %s, max %s", at(0.5), at(0.99), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
