package master

import (
	"context"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Framework-scoped records (fsm/records.go has the rules). The edge
// authenticates the caller and stamps its stream's digest into the
// command; the FSM judges ownership, the version and the size.

// PutRecord stores one of the caller's records.
func (s *schedulerServer) PutRecord(ctx context.Context, req *connect.Request[agorav1.PutRecordRequest]) (*connect.Response[agorav1.PutRecordResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	res, err := s.m.Apply(ctx, fsm.CmdPutRecord, &agorav1.PutRecordCommand{
		FrameworkId:     fw.GetId(),
		StreamToken:     fw.GetStreamToken(),
		Key:             req.Msg.GetKey(),
		Value:           req.Msg.GetValue(),
		ExpectedVersion: req.Msg.GetExpectedVersion(),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.PutRecordResponse{Version: res.Index}), nil
}

// DeleteRecord removes one of the caller's records.
func (s *schedulerServer) DeleteRecord(ctx context.Context, req *connect.Request[agorav1.DeleteRecordRequest]) (*connect.Response[agorav1.DeleteRecordResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	if _, err := s.m.Apply(ctx, fsm.CmdDeleteRecord, &agorav1.DeleteRecordCommand{
		FrameworkId:     fw.GetId(),
		StreamToken:     fw.GetStreamToken(),
		Key:             req.Msg.GetKey(),
		ExpectedVersion: req.Msg.GetExpectedVersion(),
	}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.DeleteRecordResponse{}), nil
}

// ListRecords lists the caller's records under a prefix, from a
// linearizable read (the leader's state after confirming leadership).
func (s *schedulerServer) ListRecords(ctx context.Context, req *connect.Request[agorav1.ListRecordsRequest]) (*connect.Response[agorav1.ListRecordsResponse], error) {
	_, fw, err := s.caller(ctx, req.Msg.GetCall())
	if err != nil {
		return nil, err
	}
	st, err := s.m.ReadState(ctx, false)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListRecordsResponse{Records: st.Records(fw.GetId(), req.Msg.GetPrefix())}), nil
}
