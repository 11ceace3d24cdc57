package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/freeport"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/tlsconf"
)

// `agora tls create-ca` and `agora tls cert` write files a master, an
// agent... and a client use: a one-master cluster with TLS and a gossip
// key answers `agora status` with a client certificate, and not without.
func TestTLSCommandsWriteUsableFiles(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := agora(t, "tls", "create-ca", "--out", dir); code != 0 {
		t.Fatalf("create-ca: %s", errOut)
	}
	for _, c := range [][2]string{{"master", "m1"}, {"agent", "a1"}, {"client", "alice"}} {
		out, errOut, code := agora(t, "tls", "cert", "--role", c[0], "--name", c[1], "--hosts", "127.0.0.1", "--out", dir)
		if code != 0 {
			t.Fatalf("cert %v: %s", c, errOut)
		}
		if !strings.Contains(out, c[0]+".agora.agora") {
			t.Errorf("cert %v printed %q", c, out)
		}
		b, err := tlsconf.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, c[1]+".pem"), Key: filepath.Join(dir, c[1]+"-key.pem")}.Load()
		if err != nil {
			t.Fatalf("load %v: %v", c, err)
		}
		if !tlsconf.HasRole(b.Leaf(), c[0], "") {
			t.Errorf("%s certificate lacks its role: %v", c[1], b.Leaf().DNSNames)
		}
	}
	key, errOut, code := agora(t, "gossip", "keygen")
	if code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	key = strings.TrimSpace(key)
	if _, err := gossip.ParseKey(key); err != nil {
		t.Fatalf("keygen printed %q: %v", key, err)
	}

	httpPort, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	raftPort, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	gossipPort, err := freeport.TCPUDP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	gossipAddr := fmt.Sprintf("127.0.0.1:%d", gossipPort)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, agoraBin, "master", "--id", "m1", "--data-dir", t.TempDir(),
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--raft", fmt.Sprintf("127.0.0.1:%d", raftPort),
		"--gossip", gossipAddr, "--join", gossipAddr, "--bootstrap-expect", "1",
		"--gossip-profile", "local", "--raft-profile", "fast", "--log-level", "warn",
		"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "m1.pem"), "--tls-key", filepath.Join(dir, "m1-key.pem"),
		"--gossip-key", key)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	t.Setenv("AGORA_TLS_CA", filepath.Join(dir, "ca.pem"))
	t.Setenv("AGORA_TLS_CERT", filepath.Join(dir, "alice.pem"))
	t.Setenv("AGORA_TLS_KEY", filepath.Join(dir, "alice-key.pem"))
	eventually(t, 60*time.Second, "status over TLS with a client certificate from the environment", func() (bool, string) {
		out, errOut, code := agora(t, "status", "--json", "--timeout", "5s", "--addr", addr)
		return code == 0 && strings.Contains(out, "https://"), out + errOut
	})
	if out, errOut, code := agora(t, "gossip", "key", "list", "--addr", addr); code != 0 || !strings.Contains(out, key) {
		t.Errorf("gossip key list: %d %s %s", code, out, errOut)
	}
	// The agent certificate is not a client's certificate for the agent
	// API only: operator calls take any CA-signed certificate.
	if _, errOut, code := agora(t, "status", "--addr", addr, "--tls-cert", filepath.Join(dir, "a1.pem"), "--tls-key", filepath.Join(dir, "a1-key.pem")); code != 0 {
		t.Errorf("status with an agent certificate: %s", errOut)
	}
	// Without a certificate: refused, one line, non-zero, quickly.
	t.Setenv("AGORA_TLS_CERT", "")
	t.Setenv("AGORA_TLS_KEY", "")
	_, errOut, code = agora(t, "status", "--addr", addr, "--tls-ca", filepath.Join(dir, "ca.pem"), "--timeout", "20s")
	if code == 0 {
		t.Fatal("status without a client certificate succeeded")
	}
	if !strings.Contains(errOut, "--tls-ca, --tls-cert and --tls-key go together") {
		t.Errorf("CA alone: %q", errOut)
	}
	t.Setenv("AGORA_TLS_CA", "")
	_, errOut, code = agora(t, "status", "--addr", addr, "--timeout", "20s")
	if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("plaintext status against a TLS master: code %d, %q", code, errOut)
	}
}

func TestSecurityBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"tls", "cert", "--role", "admin", "--name", "x", "--out", dir}, `--role "admin": want master, agent or client`},
		{[]string{"tls", "cert", "--role", "client", "--name", "x", "--out", dir}, "read CA"},
		{[]string{"tls", "create-ca"}, "--out is required"},
		{[]string{"tls", "frobnicate"}, "unknown tls command"},
		{[]string{"gossip", "key", "install", "c2hvcnQ="}, "key must be base64 of 16, 24 or 32 bytes"},
		{[]string{"gossip", "key", "shred"}, "unknown gossip key action"},
		{[]string{"status", "--tls-ca", filepath.Join(dir, "nope.pem"), "--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", filepath.Join(dir, "nope-key.pem")}, "no such file"},
		{[]string{"master", "--id", "m1", "--data-dir", dir, "--gossip-key", "c2hvcnQ="}, "--gossip-key"},
		{[]string{"agent", "--id", "a1", "--data-dir", dir, "--resources", "cpus:1;mem:64", "--tls-cert", "x.pem"}, "go together"},
	}
	for _, c := range cases {
		_, errOut, code := agora(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("agora %v: exit %d, stderr %q; want one line with %q", c.args, code, errOut, c.want)
		}
	}
}
