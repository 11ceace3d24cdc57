package master

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agora-sched/agora/logging"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/tlsconf"
)

// HealthService is the gRPC health service name.
const HealthService = "grpc.health.v1.Health"

// maxStreamsPerConn is how many concurrent HTTP/2 streams a master lets
// one connection have.
const maxStreamsPerConn = 1000

// Services lists the fully qualified names of the services a master serves
// (and reflection advertises).
var Services = []string{
	agorav1connect.OperatorServiceName,
	agorav1connect.AgentServiceName,
	agorav1connect.SchedulerServiceName,
	HealthService,
}

func (m *Master) newHTTPServer() *http.Server {
	mux := http.NewServeMux()
	// Small messages are not worth gzip's CPU (most agora messages are).
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(m.cfg.Limits.readMaxBytes()), connect.WithCompressMinBytes(4 << 10), connect.WithInterceptors(m.metrics.rpc),
		connect.WithCodec(protoCodec{})}
	if m.sec.audit != nil {
		opts = append(opts, connect.WithInterceptors(auditInterceptor{m: m}))
	}
	opPath, opHandler := agorav1connect.NewOperatorServiceHandler(&operatorServer{m: m}, opts...)
	mux.Handle(opPath, m.authenticate(opHandler))
	agentPath, agentHandler := agorav1connect.NewAgentServiceHandler(m.agentSrv, opts...)
	mux.Handle(agentPath, m.requireRole(tlsconf.RoleAgent, m.authenticate(agentHandler)))
	// Masters pass agent-gone hints to the leader (agent_gone.go).
	mux.Handle(AgentGoneProcedure, m.requireRole(tlsconf.RoleMaster, m.agentGoneHandler(opts...)))
	schedPath, schedHandler := agorav1connect.NewSchedulerServiceHandler(m.schedSrv, opts...)
	mux.Handle(schedPath, m.authenticate(schedHandler))

	h := &healthServer{m: m}
	mux.Handle("/"+HealthService+"/Check", connect.NewUnaryHandler("/"+HealthService+"/Check", h.check, connect.WithInterceptors(m.metrics.rpc)))
	mux.Handle("/"+HealthService+"/Watch", connect.NewServerStreamHandler("/"+HealthService+"/Watch", h.watch, connect.WithInterceptors(m.metrics.rpc)))

	reflector := grpcreflect.NewStaticReflector(Services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))

	mux.Handle("/metrics", m.requireOperatorRead(m.metrics.handler()))
	mux.Handle("/ui/", m.requireOperatorRead(m.uiHandler()))

	mux.Handle("/debug/pprof/", m.requireOperatorRead(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", m.requireOperatorRead(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", m.requireOperatorRead(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", m.requireOperatorRead(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", m.requireOperatorRead(http.HandlerFunc(pprof.Trace)))

	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logging.StdLog(m.log, "http"),
		// Agents' connections closing are agent-gone hints (agent_gone.go).
		ConnContext: m.connContext,
		ConnState:   m.connState,
	}
	// Streams per connection: a client's long polls, status calls,
	// accepts and streams to one master share one connection (100
	// simulated agents, or an SDK framework with 128 Accepts in flight,
	// hold 200-300 calls at once); past Go's default of 250 a client opens
	// a second connection.
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConn}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.Protocols.SetHTTP2(true) // over TLS, by ALPN
	return srv
}

// healthServer implements grpc.health.v1.Health over Connect: a master is
// SERVING while it knows a leader.
type healthServer struct{ m *Master }

func (h *healthServer) status(service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	known := service == ""
	for _, s := range Services {
		known = known || s == service
	}
	if !known {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", service))
	}
	if id, _ := h.m.Leader(); id != "" {
		return healthpb.HealthCheckResponse_SERVING, nil
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, nil
}

func (h *healthServer) check(_ context.Context, req *connect.Request[healthpb.HealthCheckRequest]) (*connect.Response[healthpb.HealthCheckResponse], error) {
	st, err := h.status(req.Msg.GetService())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&healthpb.HealthCheckResponse{Status: st}), nil
}

func (h *healthServer) watch(ctx context.Context, req *connect.Request[healthpb.HealthCheckRequest], stream *connect.ServerStream[healthpb.HealthCheckResponse]) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st, _ := h.status(req.Msg.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.m.stopped:
			return nil
		case <-t.C:
		}
	}
}
