package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/logging"
)

// raftTimeout bounds one Raft RPC (dial, write, read) on the transport.
const raftTimeout = 10 * time.Second

// RaftTransport is agora's Raft TCP transport: raft's NetworkTransport over
// a stream layer that can abort every dial and connection it made, with
// pipelined replication turned off.
//
// Abort: raft's own Shutdown waits for every replication goroutine, and a
// goroutine dialing a peer whose address has vanished (a killed container:
// no RST, no ARP answer) would hold it for the whole dial timeout; Abort
// ends those at once.
//
// No pipelining: raft v1.7.3's pipelined replication can deadlock. When a
// follower answers an AppendEntries with Success=false (a term change, a
// log mismatch after a pause), raft's pipeline decoder exits; the send loop
// may still issue one more send, which parks handing its future to the
// transport's decoder, which parks handing the previous response to the
// exited decoder. replicate() then never returns, so the follower keeps
// getting heartbeats (it never calls an election) but never another entry,
// and Raft's Shutdown waits for that goroutine forever. The chaos suite's
// docker tier caught it as a master that ignored SIGTERM (goroutine dump:
// netPipeline.AppendEntries in pipelineSend); grafana/pyroscope#5518 and
// hashicorp/raft#612 describe the same. Without a pipeline raft replicates
// with one AppendEntries RPC per follower at a time, each carrying up to
// MaxAppendEntries entries.
type RaftTransport struct {
	*raft.NetworkTransport
	stream    *abortableStream
	followers followerTracker // replication progress, for metrics (metrics_raft.go)
}

// AppendEntriesPipeline reports that pipelining is not supported, so raft
// replicates with plain AppendEntries RPCs (see RaftTransport).
func (t *RaftTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// Abort makes every pending dial fail and closes every connection the
// transport holds, so in-flight RPCs end now. Raft sees them fail like a
// network error; call it just before raft.Shutdown.
func (t *RaftTransport) Abort() { t.stream.abort() }

// NewRaftTransport binds agora's Raft TCP transport on addr.
func NewRaftTransport(addr string, logger *slog.Logger) (*RaftTransport, error) {
	return newRaftTransport(addr, logger, nil)
}

func newRaftTransport(addr string, logger *slog.Logger, peerTLS *tls.Config) (*RaftTransport, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("master: raft transport %s: %w", addr, err)
	}
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return nil, fmt.Errorf("master: raft transport %s: needs an address others can reach, not an unspecified one", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("master: raft transport %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &abortableStream{Listener: ln, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}, tls: peerTLS}
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s,
		MaxPool: 5,
		Timeout: raftTimeout,
		Logger:  logging.HCLog(logger, "raft-net"),
	})
	return &RaftTransport{NetworkTransport: nt, stream: s}, nil
}

// abortableStream is a raft.StreamLayer over TCP whose dials take a
// context and whose connections are tracked until closed.
type abortableStream struct {
	net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	tls    *tls.Config // nil: plain TCP (see tls.go)

	mu      sync.Mutex
	aborted bool
	conns   map[net.Conn]struct{}
}

var errTransportAborted = errors.New("master: raft transport aborted")

func (s *abortableStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, err := s.track(c)
	if err != nil {
		return nil, err
	}
	tc.inbound = true
	return s.secureInbound(tc), nil
}

func (s *abortableStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(s.ctx, "tcp", string(address))
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: dial %s", errTransportAborted, address)
		}
		return nil, err
	}
	tc, err := s.track(c)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s.secureOutbound(tc, string(address), timeout)
}

func (s *abortableStream) track(c net.Conn) (*trackedConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = c.Close()
		return nil, errTransportAborted
	}
	s.conns[c] = struct{}{}
	return &trackedConn{Conn: c, s: s}, nil
}

func (s *abortableStream) forget(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *abortableStream) abort() {
	s.cancel()
	s.mu.Lock()
	s.aborted = true
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

func (s *abortableStream) Close() error {
	s.abort()
	return s.Listener.Close()
}

// trackedConn removes itself from its stream's set when closed.
type trackedConn struct {
	net.Conn
	s       *abortableStream
	once    sync.Once
	inbound bool // accepted, read by raft's handleConn
}

// Read reports io.EOF, not "use of closed network connection", when an
// inbound connection fails because we closed or aborted the stream: raft's
// handleConn logs every error but io.EOF as "failed to decode incoming
// command" at ERROR, and our own shutdown is not one.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.inbound && errors.Is(err, net.ErrClosed) && c.s.ctx.Err() != nil {
		return n, io.EOF
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.forget(c.Conn) })
	return c.Conn.Close()
}
