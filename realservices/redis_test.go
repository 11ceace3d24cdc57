package realservices

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resp is a minimal RESP2 client: enough for SET, GET and PING.
type resp struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRedis(addr string) (*resp, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &resp{conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *resp) Close() error { return c.conn.Close() }

// do sends one command and returns its reply: a simple string or error
// line as is ("+OK", "-ERR ..."), a bulk string's value, or "(nil)".
func (c *resp) do(args ...string) (string, error) {
	if err := c.conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("resp: empty reply")
	}
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("resp: bad bulk length %q", line)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("resp: unexpected reply %q", line)
}

// redisDo dials addr, runs one command and closes.
func redisDo(addr string, args ...string) (string, error) {
	c, err := dialRedis(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.do(args...)
}

// TestRedis: one Redis pod with an append-only file on its volume; the
// task is SIGKILLed, relaunched in place, and every acknowledged key is
// still there.
func TestRedis(t *testing.T) {
	requireBinaries(t, "redis-server")
	c := startCluster(t, 3)
	c.run(specPath("redis.json"))
	st := c.waitComplete("redis", 1)
	pod := st.Pods[0]
	t.Logf("redis pod %s on agent %s at %s (task %s)", pod.Name, pod.AgentID, pod.Address, pod.TaskID)
	poll(t, "redis answers PING", func() (bool, string) {
		r, err := redisDo(pod.Address, "PING")
		if err != nil {
			return false, err.Error()
		}
		return r == "+PONG", r
	})

	conn, err := dialRedis(pod.Address)
	if err != nil {
		t.Fatal(err)
	}
	const keys = 100
	for i := 0; i < keys; i++ {
		r, err := conn.do("SET", fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
		if err != nil || r != "+OK" {
			t.Fatalf("SET k%d: %q %v", i, r, err)
		}
	}
	conn.Close()

	killed := time.Now()
	old := killTask(t, pod.TaskID)
	t.Logf("SIGKILLed redis-server (pids %v)", old)
	poll(t, "the killed redis-server gone", func() (bool, string) {
		for _, pid := range old {
			if alive(pid) {
				return false, fmt.Sprintf("pid %d alive", pid)
			}
		}
		return true, ""
	})
	poll(t, "redis relaunched in place", func() (bool, string) {
		s, err := c.status("redis")
		if err != nil {
			return false, err.Error()
		}
		if len(s.Pods) != 1 {
			return false, fmt.Sprintf("%d pods", len(s.Pods))
		}
		p := s.Pods[0]
		if p.TaskID == pod.TaskID || !p.Ready || p.State != "RUNNING" {
			return false, fmt.Sprintf("%+v", p)
		}
		if p.AgentID != pod.AgentID || p.Address != pod.Address || p.VolumeID != pod.VolumeID {
			t.Fatalf("redis moved: %+v, was %+v", p, pod)
		}
		if len(taskSoftware(p.TaskID)) == 0 {
			return false, "no process for task " + p.TaskID
		}
		r, err := redisDo(p.Address, "PING")
		if err != nil {
			return false, err.Error()
		}
		return r == "+PONG", r
	})
	t.Logf("redis relaunched in place and answering %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))

	conn, err = dialRedis(pod.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < keys; i++ {
		r, err := conn.do("GET", fmt.Sprintf("k%d", i))
		if err != nil || r != fmt.Sprintf("v%d", i) {
			t.Fatalf("GET k%d after the relaunch: %q %v", i, r, err)
		}
	}
}
