package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// findBuf looks for buf where `make proto-tools` installs it.
func findBuf() string {
	if p, err := exec.LookPath("buf"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "buf")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestCommittedReferenceIsCurrent regenerates docs/api.md from rpc/proto
// and fails when the committed file differs: run `make docs`.
func TestCommittedReferenceIsCurrent(t *testing.T) {
	buf := findBuf()
	if buf == "" {
		t.Skip("!!! docs/api.md freshness NOT CHECKED: buf is not installed (make proto-tools installs it)")
	}
	set := filepath.Join(t.TempDir(), "agora.binpb")
	cmd := exec.Command(buf, "build", "-o", set)
	cmd.Dir = filepath.Join("..", "..", "rpc")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf build: %v: %s", err, out)
	}
	got, err := generate(set)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/api.md is stale: run `make docs` and commit it")
	}
	for _, s := range []string{"### agora.v1.OperatorService", "| `Subscribe` |", "stream [SubscribeResponse]", "#### TaskState"} {
		if !bytes.Contains(got, []byte(s)) {
			t.Errorf("the reference lacks %q", s)
		}
	}
}

func TestBadInput(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.binpb")
	if err := os.WriteFile(p, []byte("not a descriptor set"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := generate(p); err == nil {
		t.Error("garbage decoded as a descriptor set")
	}
	if _, err := generate(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file gave no error")
	}
}
