package kvservice

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Peers maps each pod index of the service to its host:port. Index 0 is the
// primary.
type Peers map[int]string

// ParsePeers parses the KV_PEERS format: comma-separated index=host:port,
// e.g. "0=10.0.0.1:31000,1=10.0.0.2:31000,2=10.0.0.3:31000". Spaces around
// items are ignored. Indexes must be unique and non-negative, and index 0
// (the primary) must be present.
func ParsePeers(s string) (Peers, error) {
	p := Peers{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		idx, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("kvservice: peer %q: want index=host:port", item)
		}
		i, err := strconv.Atoi(strings.TrimSpace(idx))
		if err != nil || i < 0 {
			return nil, fmt.Errorf("kvservice: peer %q: index must be a non-negative integer", item)
		}
		addr = strings.TrimSpace(addr)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("kvservice: peer %q: %w", item, err)
		}
		if _, dup := p[i]; dup {
			return nil, fmt.Errorf("kvservice: peer index %d listed twice", i)
		}
		p[i] = addr
	}
	if _, ok := p[0]; !ok {
		return nil, fmt.Errorf("kvservice: peers %q: index 0 (the primary) is missing", s)
	}
	return p, nil
}

// String formats p in the KV_PEERS format, sorted by index.
func (p Peers) String() string {
	parts := make([]string, 0, len(p))
	for _, i := range p.indexes() {
		parts = append(parts, strconv.Itoa(i)+"="+p[i])
	}
	return strings.Join(parts, ",")
}

// Quorum is the number of pods (the primary included) that must hold a
// write durably before it is acknowledged: a majority of the list.
func (p Peers) Quorum() int { return len(p)/2 + 1 }

// recoveryReads is how many pods other than the primary a primary that lost
// its log must read from so that every acknowledged write is seen: an
// acknowledged write is on at least Quorum()-1 of the len(p)-1 others, so
// any len(p)-Quorum()+1 of them include one that has it. A single pod has
// nobody to ask.
func (p Peers) recoveryReads() int {
	if len(p) <= 1 {
		return 0
	}
	return len(p) - p.Quorum() + 1
}

func (p Peers) indexes() []int {
	out := make([]int, 0, len(p))
	for i := range p {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}

func (p Peers) clone() Peers {
	out := make(Peers, len(p))
	for i, a := range p {
		out[i] = a
	}
	return out
}
