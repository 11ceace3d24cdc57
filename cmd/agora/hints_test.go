package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agora-sched/agora/freeport"
)

// A client command with no master at --addr fails in one line that says
// what to try next, and exits 1.
func TestNoMasterSaysWhatToDo(t *testing.T) {
	port, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("http://127.0.0.1:%d", port)
	_, errOut, code := agora(t, "agents", "--addr", addr, "--timeout", "1s")
	line := strings.TrimSpace(errOut)
	if code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "no master reachable at "+addr) || !strings.Contains(line, "--addr") {
		t.Errorf("exit %d, stderr %q: want one line naming %s and --addr", code, errOut, addr)
	}
}
