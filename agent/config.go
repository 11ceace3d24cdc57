package agent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/tlsconf"
)

// Config configures an Agent.
type Config struct {
	// ID names the agent in the cluster: ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$.
	// A restarted agent keeps its id (and its DataDir).
	ID string

	// DataDir holds the agent's checkpoints (outbox.json, launched.json),
	// the executor's sandboxes and persistent volumes (volumes/<id>).
	DataDir string

	// GossipAddr is the host:port the agent binds for gossip; port 0 picks
	// a free port (Agent.GossipAddr reports it).
	GossipAddr string

	// HTTPAddr, optional, is where the agent serves /health and /metrics and
	// what it advertises as its address. Port 0 picks a free port.
	HTTPAddr string

	// Join lists gossip addresses of members (usually the masters) to join.
	Join []string

	// Resources is what the agent offers. Empty means DefaultResources(DataDir).
	Resources resources.Resources

	// Attributes are free-form labels (rack, zone) shown in offers.
	Attributes map[string]string

	// GossipProfile selects gossip timings; empty means gossip.ProfileLAN.
	GossipProfile gossip.Profile

	// Cluster must equal the masters' cluster name; empty means "agora".
	Cluster string

	// TLS, optional, turns on mutual TLS: calls to the masters present
	// this certificate (valid for agent.<Cluster>.agora, or the masters
	// refuse it) and accept only master certificates; the HTTP listener
	// requires a CA-signed client certificate. Nil means plaintext.
	TLS *tlsconf.Bundle
	// Token, optional, is the agent's bearer token for masters that run
	// with an auth file (an auth-file principal bound to this agent's id).
	Token string

	// GossipKeyring, optional, encrypts gossip; the first key is the
	// primary. It must hold the pool's current key, or the agent cannot
	// join.
	GossipKeyring [][]byte

	// Version is reported at registration.
	Version string

	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger

	// Decommission makes the agent's graceful stop (Run's context ending)
	// a decommission: it kills its tasks, waits for their final updates to
	// be delivered, and tells the masters it is gone for good. Without it a
	// graceful stop is a stop for a restart: the tasks keep running and the
	// masters wait for the agent to come back.
	Decommission bool
}

// ValidID reports whether id is a valid agent id (the FSM's rule).
func ValidID(id string) bool { return fsm.ValidAgentID(id) }

// DefaultPorts is the port range an agent offers when its resources are
// taken from the machine.
var DefaultPorts = resources.Range{Begin: 31000, End: 32000}

// DefaultResources measures the machine: cpus = number of CPUs, mem =
// MemTotal from /proc/meminfo minus 10% (MiB), disk = free space of the
// file system holding dataDir (MiB), ports = DefaultPorts.
func DefaultResources(dataDir string) (resources.Resources, error) {
	r := resources.Scalar("cpus", float64(runtime.NumCPU()))
	memKiB, err := memTotalKiB("/proc/meminfo")
	if err != nil {
		return resources.Resources{}, fmt.Errorf("agent: default resources: %w", err)
	}
	r = r.Add(resources.Scalar("mem", float64(memKiB/1024)*0.9))
	if dataDir == "" {
		dataDir = "."
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &st); err != nil {
		return resources.Resources{}, fmt.Errorf("agent: default resources: disk of %s: %w", dataDir, err)
	}
	freeMiB := float64(st.Bavail) * float64(st.Bsize) / (1 << 20)
	r = r.Add(resources.Scalar("disk", float64(int64(freeMiB))))
	r = r.Add(resources.Ranges("ports", DefaultPorts))
	return r, nil
}

// memTotalKiB reads MemTotal (in KiB) from a meminfo file.
func memTotalKiB(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read memory size: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			v, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("read memory size: bad MemTotal line %q in %s", sc.Text(), path)
			}
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read memory size: %w", err)
	}
	return 0, fmt.Errorf("read memory size: no MemTotal in %s", path)
}

var attrKeyRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,62}$`)

// ErrAttributes is wrapped by every ParseAttributes error.
var ErrAttributes = errors.New("agent: bad attributes")

// ParseAttributes reads 'rack:r1;zone:a' into a map. Keys match
// ^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,62}$ and appear once; values are non-empty,
// at most 256 bytes, without ';'. A blank spec gives an empty map.
func ParseAttributes(spec string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%w: %q: want key:value", ErrAttributes, part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !attrKeyRE.MatchString(k) {
			return nil, fmt.Errorf("%w: bad key %q: want [a-zA-Z0-9][a-zA-Z0-9_./-]*, at most 63 characters", ErrAttributes, k)
		}
		if v == "" {
			return nil, fmt.Errorf("%w: %s: empty value", ErrAttributes, k)
		}
		if len(v) > 256 {
			return nil, fmt.Errorf("%w: %s: value longer than 256 bytes", ErrAttributes, k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: key %q given twice", ErrAttributes, k)
		}
		out[k] = v
	}
	return out, nil
}
