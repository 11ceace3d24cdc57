package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agora-sched/agora/auth"
)

func TestAuthTokenAndHash(t *testing.T) {
	out, errOut, code := agora(t, "auth", "token", "--principal", "web", "--agent", "a1")
	if code != 0 {
		t.Fatalf("auth token: exit %d: %s", code, errOut)
	}
	var tok, hash, entry string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "token:"):
			tok = strings.TrimSpace(strings.TrimPrefix(line, "token:"))
		case strings.HasPrefix(line, "sha256:"):
			hash = strings.TrimSpace(strings.TrimPrefix(line, "sha256:"))
		case strings.HasPrefix(line, "auth-file entry:"):
			entry = strings.TrimSpace(strings.TrimPrefix(line, "auth-file entry:"))
		}
	}
	if tok == "" || hash != auth.HashToken(tok) {
		t.Fatalf("token %q hash %q; output %q", tok, hash, out)
	}
	a, err := auth.ParseAuthFile([]byte(`{"principals":[` + entry + `]}`))
	if err != nil {
		t.Fatalf("printed entry %q: %v", entry, err)
	}
	if id, ok := a.Token(tok); !ok || id.Principal != "web" || id.Agent != "a1" {
		t.Fatalf("the printed entry maps the token to %+v %v", id, ok)
	}
	out, _, code = agora(t, "auth", "hash", tok)
	if code != 0 || strings.TrimSpace(out) != hash {
		t.Fatalf("auth hash: exit %d, %q, want %q", code, out, hash)
	}
}

func TestAuthBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"principals":[{"name":"x","token_sha256":["short"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"auth", "frobnicate"}, "unknown auth command"},
		{[]string{"auth", "hash", " "}, "empty token"},
		{[]string{"master", "--id", "m1", "--data-dir", dir, "--auth-file", filepath.Join(dir, "nope.json")}, "no such file"},
		{[]string{"master", "--id", "m1", "--data-dir", dir, "--auth-file", bad}, "not 64 hex digits"},
		{[]string{"master", "--id", "m1", "--data-dir", dir, "--acl-file", bad}, "--acl-file needs --auth-file"},
	}
	for _, c := range cases {
		_, errOut, code := agora(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("agora %v: exit %d, stderr %q; want one line with %q", c.args, code, errOut, c.want)
		}
	}
}
