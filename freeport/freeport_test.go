package freeport

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

func TestPortsAreDistinctAndBelowEphemeral(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := TCPUDP("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if p < Low || p >= ephemeralStart() {
			t.Fatalf("port %d outside [%d, %d)", p, Low, ephemeralStart())
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		l.Close()
	}
}

// TestLockedAcrossProcesses: a port this process holds is skipped by
// another process (the child takes every port it can probe and must never
// return one of ours).
func TestLockedAcrossProcesses(t *testing.T) {
	if os.Getenv("FREEPORT_CHILD") != "" {
		for range 200 {
			p, err := TCP("127.0.0.1")
			if err != nil {
				os.Exit(3)
			}
			os.Stdout.WriteString(strconv.Itoa(p) + "\n")
		}
		os.Exit(0)
	}
	ours := map[int]bool{}
	for range 200 {
		p, err := TCP("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ours[p] = true
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLockedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	n := 0
	for _, line := range splitLines(string(out)) {
		p, err := strconv.Atoi(line)
		if err != nil {
			continue
		}
		n++
		if ours[p] {
			t.Fatalf("child got port %d, which this process holds", p)
		}
	}
	if n != 200 {
		t.Fatalf("child returned %d ports, want 200", n)
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestBlock(t *testing.T) {
	offs := []int{0, 1, 100, 200}
	a, err := Block("127.0.0.1", offs, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Block("127.0.0.1", offs, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range offs {
		for _, y := range offs {
			if a+x == b+y {
				t.Fatalf("blocks at %d and %d share port %d", a, b, a+x)
			}
		}
	}
	if a+200 >= ephemeralStart() {
		t.Fatalf("block %d reaches into the ephemeral range", a)
	}
}
