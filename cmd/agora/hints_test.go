package main

import (
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

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

func TestNextStep(t *testing.T) {
	lastAddr = "http://m1:7100"
	defer func() { lastAddr = "" }()
	for _, tc := range []struct {
		code   connect.Code
		msg    string
		leader bool
		want   string
	}{
		{connect.CodeUnavailable, "dial tcp 10.0.0.1:7100: connect: connection refused", false, "no master reachable at http://m1:7100"},
		{connect.CodeDeadlineExceeded, "client: gave up after 3 attempts: dial tcp: i/o timeout", false, "no master reachable"},
		{connect.CodeUnavailable, "no leader", false, "know no leader"},
		{connect.CodeDeadlineExceeded, "context deadline exceeded", false, "longer --timeout"},
		{connect.CodeUnauthenticated, "bad certificate", false, "--tls-ca"},
		{connect.CodeNotFound, "agent a9 not found", false, ""},
		{connect.CodeUnavailable, "not the leader", true, ""},
	} {
		got := nextStep(tc.code, tc.msg, tc.leader)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("nextStep(%v, %q, %v) = %q, want one containing %q", tc.code, tc.msg, tc.leader, got, tc.want)
		}
	}
}
