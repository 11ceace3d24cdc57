package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The framework guide's Python framework (docs/examples/hello_framework.py,
// the standard library over the Connect protocol) runs its tasks on a dev
// cluster, starting from a follower.
func TestPythonFrameworkExample(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("!!! docs/examples/hello_framework.py NOT RUN: no python3 here")
	}
	addrs := startDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Every master, the followers included, must do: start from the last.
	out, err := exec.CommandContext(ctx, py, "../../docs/examples/hello_framework.py", addrs[2], "2").CombinedOutput()
	if err != nil {
		t.Fatalf("hello_framework.py: %v\n%s", err, out)
	}
	for _, want := range []string{"subscribed as ", "hello-0 TASK_STATE_FINISHED", "hello-1 TASK_STATE_FINISHED", "all 2 tasks done"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
