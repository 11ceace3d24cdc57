package master

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// GossipKeyring runs one of serf's keyring queries from this master's
// gossip member, so every live member (masters and agents) changes its
// keyring. It needs no leader: the keyring is gossip's, not Raft's. A
// query some member failed answers FailedPrecondition, with the counts
// and the members' messages in the error text.
func (s *operatorServer) GossipKeyring(_ context.Context, req *connect.Request[agorav1.GossipKeyringRequest]) (*connect.Response[agorav1.GossipKeyringResponse], error) {
	pool := s.m.pool
	if pool == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("master: gossip is not running"))
	}
	key := req.Msg.GetKey()
	var (
		r   gossip.KeyringResponse
		err error
	)
	switch req.Msg.GetAction() {
	case agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST:
		r, err = pool.ListKeys()
	case agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_INSTALL:
		r, err = pool.InstallKey(key)
	case agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_USE:
		r, err = pool.UseKey(key)
	case agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_REMOVE:
		r, err = pool.RemoveKey(key)
	default:
		return nil, invalid("gossip keyring: unknown action %v", req.Msg.GetAction())
	}
	if errors.Is(err, gossip.ErrBadKey) {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err != nil {
		s.m.log.Warn("gossip keyring query failed", "action", req.Msg.GetAction().String(), "err", err, "messages", r.Messages)
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("%w (%d of %d members answered, %d failed: %v)", err, r.Responses, r.Members, r.Errors, r.Messages))
	}
	s.m.log.Info("gossip keyring changed", "action", req.Msg.GetAction().String(), "members", r.Members, "responses", r.Responses)
	resp := &agorav1.GossipKeyringResponse{
		Members: int32(r.Members), Responses: int32(r.Responses), Errors: int32(r.Errors),
		Messages: r.Messages, Keys: counts32(r.Keys), PrimaryKeys: counts32(r.PrimaryKeys),
	}
	return connect.NewResponse(resp), nil
}

func counts32(m map[string]int) map[string]int32 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int32, len(m))
	for k, v := range m {
		out[k] = int32(v)
	}
	return out
}
