package master

import (
	"errors"
	"io"
	"syscall"

	"github.com/hashicorp/raft"
)

// maxStaleConns bounds the retries of a vote request: raft's transport
// pools up to MaxPool connections per peer (newRaftTransport), all of
// which may be stale, and one more attempt dials afresh.
const maxStaleConns = 5

// RequestVote is raft's RequestVote, retried on a fresh connection when
// the one taken from the pool turns out dead. Raft asks each peer for its
// vote once per election and does not retry: a peer restarted since we
// last talked to it (its old connections in our pool end in EOF or a
// reset at the first use) lost us its vote, and the election waited for
// raft's election timeout (seen in `agora bench failover`: a leader
// watch's election lost to a stale pooled connection, issue 13). A vote
// request is safe to repeat: a voter grants the same candidate again in
// the same term and no other.
func (t *RaftTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	err := t.NetworkTransport.RequestVote(id, target, args, resp)
	for i := 0; i < maxStaleConns && staleConn(err); i++ {
		*resp = raft.RequestVoteResponse{}
		err = t.NetworkTransport.RequestVote(id, target, args, resp)
	}
	return err
}

// RequestPreVote is raft's RequestPreVote, retried as RequestVote is.
func (t *RaftTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	err := t.NetworkTransport.RequestPreVote(id, target, args, resp)
	for i := 0; i < maxStaleConns && staleConn(err); i++ {
		*resp = raft.RequestPreVoteResponse{}
		err = t.NetworkTransport.RequestPreVote(id, target, args, resp)
	}
	return err
}

// staleConn reports whether err is how a pooled connection to a peer that
// has since restarted fails.
func staleConn(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}
