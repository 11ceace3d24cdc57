package master

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/backup"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Backup and restore (`agora snapshot save|restore`): SaveSnapshot
// streams a Raft snapshot of the leader's state; RestoreSnapshot takes a
// backup file (package backup's format), checks it whole — header, size,
// checksum, and that the body decodes as an FSM state — and only then
// hands it to raft's Restore on the leader, which installs it on every
// master. A refused file changes nothing: no log entry, no snapshot.

const (
	snapshotChunk  = 256 << 10
	restoreTimeout = 2 * time.Minute
)

// agoraVersion is the version recorded in backups: the main module's
// version from the build info ("(devel)" for a source build).
func agoraVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// SaveSnapshot streams a consistent snapshot from the leader: a
// linearizable read first (every write acknowledged before the call is
// in it), then a Raft snapshot of the FSM (or the latest one when
// nothing was applied since).
func (s *operatorServer) SaveSnapshot(ctx context.Context, _ *connect.Request[agorav1.SaveSnapshotRequest], stream *connect.ServerStream[agorav1.SaveSnapshotResponse]) error {
	m := s.m
	if _, err := m.ReadState(ctx, false); err != nil {
		return err
	}
	meta, rc, err := m.takeSnapshot()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := stream.Send(&agorav1.SaveSnapshotResponse{Meta: &agorav1.SnapshotMeta{
		Index: meta.Index, Term: meta.Term, Size: meta.Size, AgoraVersion: agoraVersion(),
	}}); err != nil {
		return err
	}
	sum := sha256.New()
	buf := make([]byte, snapshotChunk)
	var sent int64
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			sum.Write(buf[:n])
			sent += int64(n)
			if err := stream.Send(&agorav1.SaveSnapshotResponse{Chunk: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("read snapshot %d: %w", meta.Index, rerr))
		}
	}
	if sent != meta.Size {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("snapshot %d: read %d of %d bytes", meta.Index, sent, meta.Size))
	}
	m.log.Info("snapshot saved by an operator", "index", meta.Index, "term", meta.Term, "bytes", sent)
	return stream.Send(&agorav1.SaveSnapshotResponse{Sha256: hex.EncodeToString(sum.Sum(nil))})
}

// takeSnapshot asks Raft for a snapshot of the FSM now and opens it.
func (m *Master) takeSnapshot() (*raft.SnapshotMeta, io.ReadCloser, error) {
	fut := m.raft.Snapshot()
	err := m.waitFuture(fut)
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return m.latestSnapshot()
	}
	if err != nil {
		return nil, nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("raft snapshot: %w", err))
	}
	meta, rc, err := fut.Open()
	if err != nil {
		return nil, nil, connect.NewError(connect.CodeInternal, fmt.Errorf("open snapshot: %w", err))
	}
	return meta, rc, nil
}

func (m *Master) latestSnapshot() (*raft.SnapshotMeta, io.ReadCloser, error) {
	list, err := m.snaps.List()
	if err != nil || len(list) == 0 {
		return nil, nil, connect.NewError(connect.CodeInternal, fmt.Errorf("no snapshot to open: %v", err))
	}
	meta, rc, err := m.snaps.Open(list[0].ID)
	if err != nil {
		return nil, nil, connect.NewError(connect.CodeInternal, fmt.Errorf("open snapshot %s: %w", list[0].ID, err))
	}
	return meta, rc, nil
}

// RestoreSnapshot receives a backup file, checks it and restores it on
// the leader. Bad files answer InvalidArgument.
func (s *operatorServer) RestoreSnapshot(ctx context.Context, stream *connect.ClientStream[agorav1.RestoreSnapshotRequest]) (*connect.Response[agorav1.RestoreSnapshotResponse], error) {
	m := s.m
	if _, err := m.ReadyState(ctx); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(m.cfg.DataDir, "restore-*.tmp")
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("restore: %w", err))
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	for stream.Receive() {
		if _, err := f.Write(stream.Msg().GetChunk()); err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("restore: spool: %w", err))
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	h, body, err := backup.VerifyFile(f)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	// raft's Restore panics when the FSM cannot read the snapshot: decode
	// it here first.
	if _, _, err := backup.Inspect(body); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("restore: %w", err))
	}
	if !m.IsLeader() {
		return nil, m.NotLeaderError()
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: h.Index, Term: h.Term, Size: int64(h.Size)}
	done := make(chan error, 1)
	go func() { done <- m.raft.Restore(meta, body, restoreTimeout) }()
	select {
	case err = <-done:
	case <-m.quit:
		return nil, outcomeUnknown(connect.NewError(connect.CodeUnavailable, fmt.Errorf("master %s is shutting down", m.cfg.ID)))
	}
	if err != nil {
		return nil, m.raftError(err)
	}
	m.log.Info("snapshot restored by an operator", "index", h.Index, "term", h.Term, "bytes", h.Size, "applied", m.raft.AppliedIndex())
	poke(m.releadCh) // the leader's work restarts against the restored state
	return connect.NewResponse(&agorav1.RestoreSnapshotResponse{Index: h.Index, Term: h.Term, AppliedIndex: m.raft.AppliedIndex()}), nil
}
