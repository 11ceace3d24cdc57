package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// ChunkSize is the size of the chunks Send sends.
const ChunkSize = 256 << 10

// Save streams a snapshot from the leader op calls (OperatorService
// SaveSnapshot) into a backup file at path. Nothing is left at path when
// it fails.
func Save(ctx context.Context, op agorav1connect.OperatorServiceClient, path string) (Header, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := op.SaveSnapshot(ctx, connect.NewRequest(&agorav1.SaveSnapshotRequest{}))
	if err != nil {
		return Header{}, err
	}
	defer stream.Close()
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return Header{}, err
		}
		return Header{}, errors.New("backup: the leader sent no snapshot")
	}
	meta := stream.Msg().GetMeta()
	if meta == nil {
		return Header{}, errors.New("backup: the leader's snapshot stream did not start with its metadata")
	}
	w, err := Create(path)
	if err != nil {
		return Header{}, err
	}
	defer w.Abort()
	sum := ""
	for stream.Receive() {
		msg := stream.Msg()
		if len(msg.GetChunk()) > 0 {
			if _, err := w.Write(msg.GetChunk()); err != nil {
				return Header{}, fmt.Errorf("backup: write %s: %w", path, err)
			}
		}
		if msg.GetSha256() != "" {
			sum = msg.GetSha256()
		}
	}
	if err := stream.Err(); err != nil {
		return Header{}, err
	}
	if sum == "" {
		return Header{}, errors.New("backup: the leader's snapshot stream ended without its checksum")
	}
	return w.Commit(meta.GetIndex(), meta.GetTerm(), uint64(meta.GetSize()), sum, meta.GetAgoraVersion())
}

// Send streams the file r, from its start, to the leader op calls
// (OperatorService RestoreSnapshot), which checks it and restores it.
// Send does not check the file itself: the leader does.
func Send(ctx context.Context, op agorav1connect.OperatorServiceClient, r io.ReadSeeker) (*agorav1.RestoreSnapshotResponse, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	stream := op.RestoreSnapshot(ctx)
	buf := make([]byte, ChunkSize)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&agorav1.RestoreSnapshotRequest{Chunk: buf[:n]}); err != nil {
				if errors.Is(err, io.EOF) {
					break // the master answered early: CloseAndReceive has its answer
				}
				return nil, err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("backup: read: %w", rerr)
		}
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}
