package master

import (
	"context"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// authorizeInfo stamps a framework's principal (the authenticated one,
// when authentication is on) into info and checks that the principal may
// register frameworks under each of its roles (the default role when it
// names none). The FSM keeps a framework's principal across
// resubscriptions and updates.
func (s *schedulerServer) authorizeInfo(ctx context.Context, info *agorav1.FrameworkInfo) error {
	if info == nil {
		return nil // the FSM names what is missing
	}
	sec := s.m.security()
	p, err := sec.callerPrincipal(ctx, info.GetPrincipal())
	if err != nil {
		return err
	}
	info.Principal = p
	roles := info.GetRoles()
	if len(roles) == 0 {
		roles = []string{resources.DefaultRole}
	}
	return sec.checkRoles(ctx, auth.RegisterFramework, roles...)
}

// authorizeOps checks an accept's reservation and volume operations
// against the ACL: the roles they reserve or unreserve for, and the roles
// of the volumes they create (the first offer's role when a volume names
// none, as the FSM does) or destroy. Framework ownership (only roles of
// the framework, only its offers) is the FSM's.
func (s *schedulerServer) authorizeOps(ctx context.Context, st *fsm.State, offerIDs []string, ops []*agorav1.Operation) error {
	sec := s.m.security()
	if !sec.acl.Enabled() {
		return nil
	}
	offerRole := ""
	if len(offerIDs) > 0 {
		if o, ok := st.Offer(offerIDs[0]); ok {
			offerRole = o.GetRole()
		}
	}
	resRoles := func(rs []*agorav1.Resource) []string {
		var out []string
		for _, r := range rs {
			if r.GetRole() != "" {
				out = append(out, r.GetRole())
			}
		}
		return out
	}
	for _, op := range ops {
		var err error
		switch op.GetType() {
		case agorav1.OperationType_OPERATION_TYPE_RESERVE:
			err = sec.checkRoles(ctx, auth.Reserve, resRoles(op.GetResources())...)
		case agorav1.OperationType_OPERATION_TYPE_UNRESERVE:
			err = sec.checkRoles(ctx, auth.Unreserve, resRoles(op.GetResources())...)
		case agorav1.OperationType_OPERATION_TYPE_CREATE:
			for _, v := range op.GetVolumes() {
				role := v.GetRole()
				if role == "" {
					role = offerRole
				}
				if err = sec.checkRoles(ctx, auth.CreateVolume, role); err != nil {
					break
				}
			}
		case agorav1.OperationType_OPERATION_TYPE_DESTROY:
			for _, v := range op.GetVolumes() {
				vol, ok := st.Volume(v.GetId())
				if !ok {
					continue // the FSM answers NotFound
				}
				if err = sec.checkRoles(ctx, auth.DestroyVolume, vol.GetRole()); err != nil {
					break
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
