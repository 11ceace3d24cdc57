package master

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// SetRoles sets many roles, each exactly as its own SetRole would: the
// same validation, the same leader judgement, committed on a quorum before
// the answer; each role gets its own result (index, or the code and
// message of its refusal). The call as a whole fails only when no verdict
// can be given (not the leader, the log failed: see Master.applyAll).
func (s *operatorServer) SetRoles(ctx context.Context, req *connect.Request[agorav1.SetRolesRequest]) (*connect.Response[agorav1.SetRolesResponse], error) {
	roles := req.Msg.GetRoles()
	if len(roles) == 0 || len(roles) > maxApplyAll {
		return nil, invalid("set_roles: %d roles, between 1 and %d allowed", len(roles), maxApplyAll)
	}
	out := make([]*agorav1.SetRoleResult, len(roles))
	cmds := make([]proto.Message, 0, len(roles))
	at := make([]int, 0, len(roles))
	for i, role := range roles {
		if rej := fsm.ValidateRole(role); rej != nil {
			out[i] = roleResult(0, RejectionError(rej))
			continue
		}
		cmds = append(cmds, &agorav1.SetRoleCommand{Role: role})
		at = append(at, i)
	}
	if len(cmds) > 0 {
		res, errs, err := s.m.applyAll(ctx, fsm.CmdSetRole, cmds)
		if err != nil {
			return nil, err
		}
		for k, i := range at {
			out[i] = roleResult(res[k].Index, errs[k])
		}
	}
	return connect.NewResponse(&agorav1.SetRolesResponse{Results: out}), nil
}

// roleResult is one SetRoles result: index on success, else err's code
// name and message.
func roleResult(index uint64, err error) *agorav1.SetRoleResult {
	if err == nil {
		return &agorav1.SetRoleResult{Index: index}
	}
	ce := connect.NewError(connect.CodeInternal, fmt.Errorf("set_roles: %w", err))
	errors.As(err, &ce)
	return &agorav1.SetRoleResult{Code: ce.Code().String(), Message: ce.Message()}
}
