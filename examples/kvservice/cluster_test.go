package kvservice

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test harness: pods served in process on fixed loopback ports, each
// stoppable and restartable on its data directory.

const waitFor = 15 * time.Second

type pod struct {
	index int
	addr  string
	dir   string

	stop context.CancelFunc
	done chan error
}

type cluster struct {
	t            *testing.T
	pods         map[int]*pod
	writeTimeout time.Duration
	logs         *logBuffer
}

// newCluster reserves n loopback ports and starts n pods.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, pods: map[int]*pod{}, writeTimeout: 2 * time.Second, logs: &logBuffer{}}
	for i := 0; i < n; i++ {
		c.addPod(i)
	}
	for i := 0; i < n; i++ {
		c.start(i, c.peers())
	}
	c.waitReady()
	t.Cleanup(func() {
		for _, p := range c.pods {
			if p.stop != nil {
				c.stopPod(p.index)
			}
		}
		if t.Failed() {
			t.Logf("pod logs:\n%s", c.logs.String())
		}
	})
	return c
}

// addPod reserves a port and a data directory for pod i without starting it.
func (c *cluster) addPod(i int) *pod {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &pod{index: i, addr: addr, dir: filepath.Join(c.t.TempDir(), fmt.Sprintf("pod%d", i))}
	c.pods[i] = p
	return p
}

func (c *cluster) peers() Peers {
	p := Peers{}
	for i, pd := range c.pods {
		p[i] = pd.addr
	}
	return p
}

func (c *cluster) start(i int, peers Peers) {
	c.t.Helper()
	p := c.pods[i]
	var ln net.Listener
	eventually(c.t, "listen on "+p.addr, func() error {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err
	})
	log := slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(Config{Index: i, DataDir: p.dir, Peers: peers, WriteTimeout: c.writeTimeout,
		PollWait: 500 * time.Millisecond, Logger: log})
	if err != nil {
		ln.Close()
		c.t.Fatalf("pod %d: %v", i, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	p.stop, p.done = stop, make(chan error, 1)
	go func() { p.done <- s.Serve(ctx, ln) }()
}

func (c *cluster) stopPod(i int) {
	c.t.Helper()
	p := c.pods[i]
	p.stop()
	p.stop = nil
	select {
	case err := <-p.done:
		if err != nil {
			c.t.Errorf("pod %d: Serve: %v", i, err)
		}
	case <-time.After(waitFor):
		c.t.Fatalf("pod %d did not stop within %s", i, waitFor)
	}
}

// waitReady waits until every running pod is ready and the primary has
// recovered.
func (c *cluster) waitReady() {
	c.t.Helper()
	for i, p := range c.pods {
		if p.stop == nil {
			continue
		}
		eventually(c.t, fmt.Sprintf("pod %d ready", i), func() error {
			st, err := status(p.addr)
			if err != nil {
				return err
			}
			if !st.Ready || (st.Recovered != nil && !*st.Recovered) {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
	}
}

func (c *cluster) addr(i int) string { return c.pods[i].addr }

// eventually polls f until it returns nil, failing the test after waitFor.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, waitFor, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var testClient = &http.Client{Timeout: 30 * time.Second}

func do(method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func put(t *testing.T, addr, key, value string) {
	t.Helper()
	code, body, err := do(http.MethodPut, "http://"+addr+"/kv/"+key, value)
	if err != nil || code != http.StatusNoContent {
		t.Fatalf("PUT %s on %s: %d %q %v", key, addr, code, body, err)
	}
}

func get(addr, key string) (int, string, error) {
	return do(http.MethodGet, "http://"+addr+"/kv/"+key, "")
}

// waitValue polls GET on addr until key has value.
func waitValue(t *testing.T, addr, key, value string) {
	t.Helper()
	eventually(t, fmt.Sprintf("GET %s on %s", key, addr), func() error {
		code, body, err := get(addr, key)
		if err != nil {
			return err
		}
		if code != http.StatusOK || body != value {
			return fmt.Errorf("got %d %q, want 200 %q", code, body, value)
		}
		return nil
	})
}

func status(addr string) (Status, error) {
	var st Status
	code, body, err := do(http.MethodGet, "http://"+addr+"/status", "")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status: %d %s", code, body)
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// logBuffer collects the pods' logs for a failing test.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
