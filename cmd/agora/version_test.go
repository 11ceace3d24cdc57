package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	out, errOut, code := agora(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, errOut)
	}
	v := mustJSON[buildInfo](t, out)
	if v.Module != "github.com/agora-sched/agora" || v.GoVersion != runtime.Version() || v.Version == "" || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version --json = %+v", v)
	}
	out, _, code = agora(t, "version")
	if code != 0 || !strings.HasPrefix(out, "agora ") || !strings.Contains(out, "go:") || !strings.Contains(out, "revision:") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}
