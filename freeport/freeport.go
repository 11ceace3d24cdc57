// Package freeport hands out ports for test and development clusters that
// bind fixed addresses (Raft and gossip addresses must stay the same across
// a restart, so port 0 cannot be used).
//
// Asking the kernel for port 0 and closing the listener is racy: until the
// caller binds the port again, the kernel may hand the same port to another
// process, above all as the local port of an outgoing connection (a busy
// test binary opens thousands on loopback), and the later bind fails with
// "address already in use". freeport avoids both sources of collisions:
//
//   - It picks ports below the kernel's ephemeral range
//     (/proc/sys/net/ipv4/ip_local_port_range), which the kernel never
//     hands out by itself, from [Low, ephemeral start).
//   - Each port handed out is locked for the life of the process with an
//     flock on a file under the system temp dir (agora-ports/PORT), so two
//     processes using freeport never get the same port at once. The lock
//     goes away with the process, however it ends.
//
// A port is only handed out if it is free for TCP (and UDP, when asked)
// at that moment.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Low is the lowest port handed out. The range below it holds well-known
// services and the ports the smoke checks use (17100-17799).
const Low = 20000

// defaultHigh is used when the ephemeral range cannot be read.
const defaultHigh = 32768

var (
	mu    sync.Mutex
	locks = map[int]*os.File{} // ports this process holds, with their lock files
)

// TCP returns a port on ip (a loopback address) free for TCP.
func TCP(ip string) (int, error) { return take(ip, false) }

// TCPUDP returns a port on ip free for both TCP and UDP (gossip uses both).
func TCPUDP(ip string) (int, error) { return take(ip, true) }

func take(ip string, udp bool) (int, error) { return Block(ip, []int{0}, udp) }

// Block returns a base port such that base+off is free (for TCP, and UDP
// with udp) for every offset, all of them held like TCP's ports. For
// programs that derive their ports from one base (agora dev --base-port).
func Block(ip string, offsets []int, udp bool) (int, error) {
	span := 0
	for _, off := range offsets {
		if off < 0 {
			return 0, fmt.Errorf("freeport: negative offset %d", off)
		}
		span = max(span, off+1)
	}
	high := ephemeralStart()
	if high-span <= Low {
		return 0, fmt.Errorf("freeport: no room below the ephemeral range (starts at %d)", high)
	}
	dir := filepath.Join(os.TempDir(), "agora-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	n := high - span - Low
	start := rand.IntN(n)
	for i := range n {
		base := Low + (start+i)%n
		if held := tryBlock(dir, ip, base, offsets, udp); held != nil {
			for port, f := range held {
				locks[port] = f
			}
			return base, nil
		}
	}
	return 0, errors.New("freeport: no free port")
}

// tryBlock locks and checks every base+off; on any failure it releases what
// it took and returns nil.
func tryBlock(dir, ip string, base int, offsets []int, udp bool) map[int]*os.File {
	held := map[int]*os.File{}
	release := func() {
		for _, f := range held {
			f.Close()
		}
	}
	for _, off := range offsets {
		port := base + off
		if locks[port] != nil || held[port] != nil {
			release()
			return nil
		}
		f, err := lock(filepath.Join(dir, strconv.Itoa(port)))
		if err != nil { // another process holds it
			release()
			return nil
		}
		held[port] = f
		if !free(ip, port, udp) {
			release()
			return nil
		}
	}
	return held
}

// lock opens path and takes an exclusive flock on it without waiting.
func lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func free(ip string, port int, udp bool) bool {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultHigh
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return defaultHigh
	}
	p, err := strconv.Atoi(f[0])
	if err != nil || p <= 0 {
		return defaultHigh
	}
	return p
}
