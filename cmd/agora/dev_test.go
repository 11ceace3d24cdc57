package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// processGone reports whether pid has ended (a zombie has).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// TestDevStopsItsTasks: Ctrl-C on `agora dev` (temporary data dir, as
// `make run` uses) stops its agents' tasks instead of orphaning them while
// their sandboxes are deleted, and the clean stop logs no ERROR and no
// "agent marked unreachable" (the agents said goodbye).
func TestDevStopsItsTasks(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to see the task's process")
	}
	base := freeBase(t)
	tmp := t.TempDir()
	cmd := exec.Command(agoraBin, "dev", "--base-port", fmt.Sprint(base))
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan string, 1)
	var dataDir string
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "(data in "); i >= 0 {
				mu.Lock()
				dataDir = strings.TrimSuffix(line[i+len("(data in "):], ")")
				mu.Unlock()
			}
			if strings.HasPrefix(line, "ready ") {
				ready <- strings.TrimPrefix(line, "ready ")
			}
		}
	}()
	var leaderURL string
	select {
	case leaderURL = <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("agora dev printed no ready line in 60 s; stderr:\n%s", stderr.String())
	}

	pidFile := filepath.Join(t.TempDir(), "pid")
	out, errOut, code := agora(t, "run", "--addr", leaderURL, "--name", "orphan", "--instances", "1", "--detach",
		"--cmd", "echo $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+" && exec sleep 600")
	if code != 0 {
		t.Fatalf("agora run --detach: exit %d\n%s\n%s", code, out, errOut)
	}
	var pid int
	eventually(t, 20*time.Second, "the task records its pid", func() (bool, string) {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false, err.Error()
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil, fmt.Sprint(err)
	})
	if pgid, err := syscall.Getpgid(pid); err == nil {
		t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }) // only if the test fails
	}
	if processGone(pid) {
		t.Fatalf("task process %d is not running", pid)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("agora dev exited with %v; stderr:\n%s", waitErr, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("agora dev did not exit within 60 s of SIGINT; stderr:\n%s", stderr.String())
	}
	eventually(t, 10*time.Second, "the task process is gone after agora dev exited", func() (bool, string) {
		return processGone(pid), fmt.Sprintf("pid %d still running", pid)
	})
	mu.Lock()
	dir := dataDir
	mu.Unlock()
	if dir == "" {
		t.Fatal("agora dev did not say where its data is")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary data dir %s still there after exit (%v)", dir, err)
	}
	logs := stderr.String()
	for _, bad := range []string{"level=ERROR", "agent marked unreachable"} {
		if strings.Contains(logs, bad) {
			t.Errorf("a clean agora dev stop logged %q:\n%s", bad, logs)
		}
	}
}
