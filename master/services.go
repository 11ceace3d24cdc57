package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
	"github.com/agora-sched/agora/service/scheduler"
)

// The service scheduler (`agora service`) is hosted by the leader: one
// leader task runs a scheduler.Host for the length of the leadership (see
// service/scheduler/doc.go for why). The Host talks to this master over
// HTTP like any framework; the operator RPCs below reach it in process.

// runServices is the leader task that hosts the service scheduler.
func (l *leader) runServices(ctx context.Context) {
	cfg := scheduler.Config{
		Masters: []string{l.m.HTTPURL()},
		Logger:  l.m.log,
		Token:   l.m.sec.internalToken,
	}
	if l.m.cfg.TLS != nil {
		// The Host calls this master like any framework: with TLS, it
		// presents the master's own certificate (it has client auth).
		cfg.HTTPClient = client.NewHTTPClient(l.m.cfg.TLS.ClientConfig(l.m.cfg.Cluster))
	}
	h := scheduler.NewHost(cfg)
	l.mu.Lock()
	l.services = h
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.services == h {
			l.services = nil
		}
		l.mu.Unlock()
	}()
	if err := h.Run(ctx); err != nil {
		l.m.log.Warn("service scheduler ended", "err", err)
	}
}

// serviceHost returns the running Host, or the error a caller sees.
func (m *Master) serviceHost() (*scheduler.Host, error) {
	if !m.IsLeader() {
		return nil, m.NotLeaderError()
	}
	m.leader.mu.Lock()
	h := m.leader.services
	m.leader.mu.Unlock()
	if h == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the service scheduler is not running yet on the leader"))
	}
	return h, nil
}

// serviceError maps package service's errors to Connect codes.
func serviceError(err error) error {
	var ce *connect.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return err
	case errors.Is(err, service.ErrUnknownPod):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, service.ErrInvalidSpec), errors.Is(err, service.ErrBadCommand):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// RunService deploys a new service.
func (s *operatorServer) RunService(ctx context.Context, req *connect.Request[agorav1.RunServiceRequest]) (*connect.Response[agorav1.RunServiceResponse], error) {
	spec, err := service.Parse(req.Msg.GetSpec())
	if err != nil {
		return nil, serviceError(err)
	}
	h, err := s.m.serviceHost()
	if err != nil {
		return nil, err
	}
	fid, v, err := h.RunService(ctx, spec)
	if err != nil {
		return nil, serviceError(err)
	}
	return connect.NewResponse(&agorav1.RunServiceResponse{Name: spec.Name, FrameworkId: fid, Index: v}), nil
}

// ScaleService sets a pod type's count.
func (s *operatorServer) ScaleService(ctx context.Context, req *connect.Request[agorav1.ScaleServiceRequest]) (*connect.Response[agorav1.ScaleServiceResponse], error) {
	n := req.Msg.GetCount()
	if n < 0 || n > service.MaxCount {
		return nil, invalid("count %d is not between 0 and %d", n, service.MaxCount)
	}
	v, err := s.serviceCommand(ctx, req.Msg.GetName(), func(st *service.State) error {
		return st.Scale(req.Msg.GetPodType(), int(n), req.Msg.GetPurge())
	})
	if err != nil {
		return nil, serviceError(err)
	}
	return connect.NewResponse(&agorav1.ScaleServiceResponse{Index: v}), nil
}

// UpdateService starts a rolling update.
func (s *operatorServer) UpdateService(ctx context.Context, req *connect.Request[agorav1.UpdateServiceRequest]) (*connect.Response[agorav1.UpdateServiceResponse], error) {
	spec, err := service.Parse(req.Msg.GetSpec())
	if err != nil {
		return nil, serviceError(err)
	}
	v, err := s.serviceCommand(ctx, req.Msg.GetName(), func(st *service.State) error { return st.Update(spec) })
	if err != nil {
		return nil, serviceError(err)
	}
	return connect.NewResponse(&agorav1.UpdateServiceResponse{Index: v}), nil
}

// ReplaceServicePod moves a pod off its agent: refused while the agent is
// active unless forced (the core does not know agent states; the master
// does). A replaced pod on an agent that is gone for good forgets the old
// placement at once (the master dropped it with the agent).
func (s *operatorServer) ReplaceServicePod(ctx context.Context, req *connect.Request[agorav1.ReplaceServicePodRequest]) (*connect.Response[agorav1.ReplaceServicePodResponse], error) {
	pod := req.Msg.GetPod()
	v, err := s.serviceCommand(ctx, req.Msg.GetName(), func(st *service.State) error {
		agentID := ""
		for _, p := range st.Status().Pods {
			if p.Name == pod {
				agentID = p.AgentID
			}
		}
		a, known := s.m.State().Agent(agentID)
		if agentID != "" && known && !req.Msg.GetForce() {
			switch a.GetState() {
			case agorav1.AgentState_AGENT_STATE_ACTIVE:
				return precondition("pod %s is on agent %s, which is active: replace moves a pod off a lost agent (--force to move it anyway)", pod, agentID)
			case agorav1.AgentState_AGENT_STATE_RESTARTING:
				return precondition("pod %s is on agent %s, which stopped for a restart and keeps its tasks: replace moves a pod off a lost agent (--force to move it anyway)", pod, agentID)
			}
		}
		if err := st.Replace(pod); err != nil {
			return err
		}
		if agentID != "" && (!known || a.GetState() == agorav1.AgentState_AGENT_STATE_GONE) {
			st.ForgetAgent(agentID)
		}
		return nil
	})
	if err != nil {
		return nil, serviceError(err)
	}
	return connect.NewResponse(&agorav1.ReplaceServicePodResponse{Index: v}), nil
}

// RemoveService retires every pod of a service.
func (s *operatorServer) RemoveService(ctx context.Context, req *connect.Request[agorav1.RemoveServiceRequest]) (*connect.Response[agorav1.RemoveServiceResponse], error) {
	v, err := s.serviceCommand(ctx, req.Msg.GetName(), func(st *service.State) error {
		st.Remove(req.Msg.GetPurge())
		return nil
	})
	if err != nil {
		return nil, serviceError(err)
	}
	return connect.NewResponse(&agorav1.RemoveServiceResponse{Index: v}), nil
}

// ListServices lists the services from their records.
func (s *operatorServer) ListServices(ctx context.Context, req *connect.Request[agorav1.ListServicesRequest]) (*connect.Response[agorav1.ListServicesResponse], error) {
	views, err := s.serviceViews(ctx, req.Msg.GetRead().GetStale(), "")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&agorav1.ListServicesResponse{Services: views}), nil
}

// GetService reports one service.
func (s *operatorServer) GetService(ctx context.Context, req *connect.Request[agorav1.GetServiceRequest]) (*connect.Response[agorav1.GetServiceResponse], error) {
	name := req.Msg.GetName()
	if name == "" {
		return nil, invalid("service name is required")
	}
	views, err := s.serviceViews(ctx, req.Msg.GetRead().GetStale(), name)
	if err != nil {
		return nil, err
	}
	if len(views) == 0 {
		return nil, notFound("unknown service %s", name)
	}
	return connect.NewResponse(&agorav1.GetServiceResponse{Service: views[0]}), nil
}

// serviceViews reads the services (only name, when set) from the records
// of the frameworks named scheduler.FrameworkPrefix+name.
func (s *operatorServer) serviceViews(ctx context.Context, stale bool, only string) ([]*agorav1.ServiceView, error) {
	st, err := s.m.ReadState(ctx, stale)
	if err != nil {
		return nil, err
	}
	return serviceViewsOf(st, only)
}

// serviceViewsOf decodes the services (only name, when set) recorded in st;
// the web UI reads them so too.
func serviceViewsOf(st *fsm.State, only string) ([]*agorav1.ServiceView, error) {
	out := []*agorav1.ServiceView{}
	for _, fw := range st.Frameworks() {
		name, ok := strings.CutPrefix(fw.GetInfo().GetName(), scheduler.FrameworkPrefix)
		if !ok || fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN || (only != "" && name != only) {
			continue
		}
		rec, ok := st.Record(fw.GetId(), scheduler.StateKey)
		if !ok {
			continue
		}
		var ss service.State
		if err := ss.UnmarshalBinary(rec.GetValue()); err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("service %s: %w", name, err))
		}
		status, err := json.Marshal(ss.Status())
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("service %s: %w", name, err))
		}
		out = append(out, &agorav1.ServiceView{Name: name, FrameworkId: fw.GetId(), Status: status, Version: rec.GetVersion()})
	}
	return out, nil
}

// serviceCommand runs fn on a copy of the named service's state at the
// leader's service host and returns the record's new version.
func (s *operatorServer) serviceCommand(ctx context.Context, name string, fn func(*service.State) error) (uint64, error) {
	h, err := s.m.serviceHost()
	if err != nil {
		return 0, err
	}
	return h.Command(ctx, name, fn)
}
