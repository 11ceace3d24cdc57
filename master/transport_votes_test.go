package master

import (
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// voter answers every vote request on tr with a grant until the test ends.
func voter(t *testing.T, tr *RaftTransport) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			var rpc raft.RPC
			select {
			case <-done:
				return
			case rpc = <-tr.Consumer():
			}
			answer(rpc)
		}
	}()
}

func answer(rpc raft.RPC) {
	switch rpc.Command.(type) {
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{Granted: true}, nil)
	default:
		rpc.Respond(nil, io.ErrUnexpectedEOF)
	}
}

// TestVoteRequestSurvivesPeerRestart: the connections our transport pooled
// to a peer die when the peer restarts; a vote request (which raft sends
// once per election) must still reach the restarted peer. Without the
// retry the second request fails with EOF on the stale pooled connection.
func TestVoteRequestSurvivesPeerRestart(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cand, err := NewRaftTransport("127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	defer cand.Close()
	peer, err := NewRaftTransport("127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	addr := peer.LocalAddr()
	voter(t, peer)

	ask := func(what string) {
		t.Helper()
		var vr raft.RequestVoteResponse
		if err := cand.RequestVote("peer", addr, &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}, &vr); err != nil || !vr.Granted {
			t.Fatalf("%s: vote request: granted %v, err %v", what, vr.Granted, err)
		}
		var pr raft.RequestPreVoteResponse
		if err := cand.RequestPreVote("peer", addr, &raft.RequestPreVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}, &pr); err != nil || !pr.Granted {
			t.Fatalf("%s: pre-vote request: granted %v, err %v", what, pr.Granted, err)
		}
	}
	ask("before the restart") // pools a connection to the peer

	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	restarted, err := NewRaftTransport(string(addr), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	voter(t, restarted)
	ask("after the restart")
}
