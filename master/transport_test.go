package master

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRaftTransportAbortEndsInFlightRPC: a peer that accepted the
// connection and then went silent (a paused or vanished container) holds
// an AppendEntries for the whole RPC timeout; Abort must end it at once,
// and no dial may succeed afterwards.
func TestRaftTransportAbortEndsInFlightRPC(t *testing.T) {
	tr, err := NewRaftTransport("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	done := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		done <- tr.AppendEntries("peer", raft.ServerAddress(silent.Addr().String()),
			&raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("me")}, Term: 1}, &resp)
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the transport never connected to the peer")
	}
	select {
	case err := <-done:
		t.Fatalf("the RPC to a silent peer returned before Abort: %v", err)
	default:
	}
	tr.Abort()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an aborted RPC reported success")
		}
	case <-time.After(raftTimeout / 2):
		t.Fatal("Abort did not end the in-flight RPC")
	}
	if _, err := tr.stream.Dial(raft.ServerAddress(silent.Addr().String()), time.Second); !errors.Is(err, errTransportAborted) {
		t.Fatalf("dial after Abort: %v, want errTransportAborted", err)
	}
}

// TestRaftTransportHasNoPipeline: pipelined replication in raft v1.7.3 can
// deadlock a follower's replication (see RaftTransport); raft must be told
// it is unsupported so that it falls back to plain AppendEntries.
func TestRaftTransportHasNoPipeline(t *testing.T) {
	tr, err := NewRaftTransport("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var trans raft.Transport = tr
	p, err := trans.AppendEntriesPipeline("peer", "127.0.0.1:1")
	if p != nil || !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("AppendEntriesPipeline = %v, %v; want ErrPipelineReplicationNotSupported", p, err)
	}
	if _, ok := trans.(raft.WithPreVote); !ok {
		t.Fatal("the wrapper hides NetworkTransport's pre-vote support")
	}
	if _, ok := trans.(raft.WithClose); !ok {
		t.Fatal("the wrapper hides NetworkTransport's Close")
	}
}

// TestStreamCloseEndsInboundReadsWithEOF: raft's handleConn logs every
// read error but io.EOF as "failed to decode incoming command" at ERROR.
// When we close the stream ourselves (shutdown), an inbound connection's
// pending read must end with io.EOF; a read on a connection we dialed, and
// a read on an inbound connection closed while the stream stays open,
// keep their real error.
func TestStreamCloseEndsInboundReadsWithEOF(t *testing.T) {
	tr, err := NewRaftTransport("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tr.Close() // stop raft's own accept loop; the test drives the stream
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &abortableStream{Listener: ln, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	defer s.Close()

	dialAndAccept := func() (in, out net.Conn) {
		t.Helper()
		out, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		in, err = s.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return in, out
	}
	read := func(c net.Conn) <-chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			ch <- err
		}()
		return ch
	}
	wait := func(ch <-chan error) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("read did not end")
			return nil
		}
	}

	// Closing one inbound connection (not the stream) is not a shutdown.
	in0, out0 := dialAndAccept()
	r0 := read(in0)
	_ = in0.Close()
	if err := wait(r0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on an inbound connection closed alone: %v, want net.ErrClosed", err)
	}
	_ = out0.Close()

	in, out := dialAndAccept()
	rin, rout := read(in), read(out)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(rin); err != io.EOF {
		t.Fatalf("inbound read after stream close: %v, want io.EOF", err)
	}
	// A dialed connection keeps its real error: its own close, or the EOF
	// of its peer (the inbound end, closed by the same Close) when that
	// close came first: Close walks the connections in map order.
	if err := wait(rout); !errors.Is(err, net.ErrClosed) && err != io.EOF {
		t.Fatalf("outbound read after stream close: %v, want net.ErrClosed or io.EOF", err)
	}
}
