package kvservice

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgoraKVServiceSubcommand runs `agora kvservice` as the agent would (a
// plain process configured by KV_* variables) and stops it with SIGTERM.
func TestAgoraKVServiceSubcommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agora binary")
	}
	bin := filepath.Join(t.TempDir(), "agora")
	build := exec.Command("go", "build", "-o", bin, "github.com/agora-sched/agora/cmd/agora")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(t.TempDir(), "volume")

	run := func(write bool) {
		t.Helper()
		cmd := exec.Command(bin, "kvservice", "--listen", addr) // the flag overrides KV_LISTEN
		cmd.Env = append(os.Environ(), EnvIndex+"=0", EnvListen+"=127.0.0.1:1", EnvData+"="+data, EnvPeers+"=0="+addr)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				<-exited
			}
		}()
		eventually(t, "health of agora kvservice", func() error {
			code, body, err := do(http.MethodGet, "http://"+addr+"/health", "")
			if err == nil && code != http.StatusOK {
				err = &httpStatusError{code, body}
			}
			return err
		})
		if write {
			put(t, addr, "survives", "restart")
		} else {
			waitValue(t, addr, "survives", "restart")
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("agora kvservice after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(waitFor):
			t.Fatalf("agora kvservice did not exit within %s of SIGTERM\n%s", waitFor, stderr.String())
		}
		if strings.Contains(stderr.String(), "level=ERROR") || !strings.Contains(stderr.String(), "msg=stopped") {
			t.Fatalf("stderr of a clean stop:\n%s", stderr.String())
		}
	}
	run(true)
	run(false) // restarted on its volume, the write is there
}

type httpStatusError struct {
	code int
	body string
}

func (e *httpStatusError) Error() string { return http.StatusText(e.code) + ": " + e.body }
