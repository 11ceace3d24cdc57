package master

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// Authentication and authorization at the edge (Config.Auth, Config.ACL):
//   - every call to the three agora services is authenticated before its
//     handler runs (authenticate): a bearer token in the Authorization
//     header, else a client certificate whose common name the auth file
//     lists; otherwise Unauthenticated. Health, reflection and GetStatus
//     stay open.
//   - operator calls are authorized by procedure (operatorNeed) before
//     anything reaches Raft; role-scoped permissions (register, reserve,
//     volumes) and framework ownership are checked by the handlers, which
//     see the message (checkRoles, ownFramework).
//   - AgentService answers only principals bound to an agent, and only
//     for that agent's id (ownAgent); the FSM checks that each reported
//     task runs on the reporting agent.

// security is what the edge knows of authentication, authorization and
// auditing; a master builds it once (the audit log is opened at Start).
type security struct {
	authn *auth.Authenticator
	acl   *auth.ACL
	audit *auditLog
	// internalToken authenticates the master's own clients (the service
	// scheduler it hosts) as InternalPrincipal; random per process, never
	// leaves it.
	internalToken string
}

// InternalPrincipal is the principal of a master's own clients: the
// service scheduler's frameworks. The ACL does not restrict it; the
// operator calls that start services are checked instead.
const InternalPrincipal = "agora:internal"

func newSecurity(cfg Config) *security {
	s := &security{authn: cfg.Auth, acl: cfg.ACL}
	if cfg.Auth != nil {
		s.internalToken = "agora_internal_" + NewID() + NewID()
	}
	return s
}

func internal(id auth.Identity) bool { return id.Via == "internal" }

// authOn reports whether callers must authenticate.
func (s *security) authOn() bool { return s != nil && s.authn != nil }

func (m *Master) authOn() bool { return m.sec.authOn() }

func (m *Master) security() *security { return m.sec }

// unauthenticatedPaths answer without a credential: health, GetStatus
// (the leader and the masters' addresses, which every client needs to
// find the leader and masters ask each other before they bootstrap) and
// RaftServerStats (one master's Raft indexes and term, which the leader's
// autopilot asks every master for; nothing else).
var unauthenticatedPaths = map[string]bool{
	"/" + HealthService + "/Check":                         true,
	"/" + HealthService + "/Watch":                         true,
	agorav1connect.OperatorServiceGetStatusProcedure:       true,
	agorav1connect.OperatorServiceRaftServerStatsProcedure: true,
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// identify maps a request's credential to an identity: a bearer token
// first, else the client certificate's common name.
func (m *Master) identify(r *http.Request) (auth.Identity, error) {
	if tok, ok := bearer(r); ok {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(m.sec.internalToken)) == 1 {
			return auth.Identity{Principal: InternalPrincipal, Via: "internal"}, nil
		}
		if id, ok := m.sec.authn.Token(tok); ok {
			return id, nil
		}
		return auth.Identity{}, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("the bearer token is not valid on this cluster"))
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn := r.TLS.PeerCertificates[0].Subject.CommonName
		if id, ok := m.sec.authn.Cert(cn); ok {
			return id, nil
		}
		return auth.Identity{}, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("certificate %q maps to no principal and the call has no bearer token", cn))
	}
	return auth.Identity{}, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("this cluster requires authentication: pass a bearer token (--token or AGORA_TOKEN) or a client certificate listed in the auth file"))
}

// authenticate wraps the API mux: callers prove who they are, operator
// calls are authorized, and the caller's identity travels in the request
// context (auth.IdentityFrom).
func (m *Master) authenticate(next http.Handler) http.Handler {
	if !m.authOn() {
		return next
	}
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if unauthenticatedPaths[r.URL.Path] || strings.HasPrefix(r.URL.Path, "/grpc.reflection.") {
			next.ServeHTTP(w, r)
			return
		}
		id, err := m.identify(r)
		if err == nil {
			err = m.authorizePath(id, r.URL.Path)
		}
		if err != nil {
			m.sec.audit.record(auditEntry{Principal: id.Principal, Via: id.Via, Procedure: r.URL.Path, Remote: r.RemoteAddr, Err: err})
			m.log.Debug("refused a call", "path", r.URL.Path, "principal", id.Principal, "remote", r.RemoteAddr, "err", err)
			if ew.IsSupported(r) {
				_ = ew.Write(w, r, err)
			} else {
				http.Error(w, err.Error(), httpStatus(err))
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), id)))
	})
}

func httpStatus(err error) int {
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// requireOperatorRead lets a plain HTTP request (metrics, pprof, a web
// UI) through only when ACLs are off or the caller authenticates as a
// principal with operator_read.
func (m *Master) requireOperatorRead(h http.Handler) http.Handler {
	if !m.authOn() {
		return h
	}
	return m.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PrincipalFrom(r.Context())
		if !m.sec.acl.AllowOperatorRead(p) {
			http.Error(w, fmt.Sprintf("principal %q may not make operator reads", p), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// Operator procedures by what they need from the ACL: "" is a read,
// "-" is open to every authenticated principal, anything else an area.
var operatorNeeds = map[string]string{
	agorav1connect.OperatorServiceGetStatusProcedure:         "-",
	agorav1connect.OperatorServiceSetRoleProcedure:           auth.AreaRoles,
	agorav1connect.OperatorServiceSetRolesProcedure:          auth.AreaRoles,
	agorav1connect.OperatorServiceDeleteRoleProcedure:        auth.AreaRoles,
	agorav1connect.OperatorServiceRemovePeerProcedure:        auth.AreaRaft,
	agorav1connect.OperatorServiceAddPeerProcedure:           auth.AreaRaft,
	agorav1connect.OperatorServiceTransferLeaderProcedure:    auth.AreaRaft,
	agorav1connect.OperatorServiceRaftHealthProcedure:        "",
	agorav1connect.OperatorServiceRaftServerStatsProcedure:   "-",
	agorav1connect.OperatorServiceSaveSnapshotProcedure:      auth.AreaSnapshots,
	agorav1connect.OperatorServiceRestoreSnapshotProcedure:   auth.AreaSnapshots,
	agorav1connect.OperatorServiceDrainAgentProcedure:        auth.AreaDrain,
	agorav1connect.OperatorServiceUndrainAgentProcedure:      auth.AreaDrain,
	agorav1connect.OperatorServiceRunServiceProcedure:        auth.AreaServices,
	agorav1connect.OperatorServiceScaleServiceProcedure:      auth.AreaServices,
	agorav1connect.OperatorServiceUpdateServiceProcedure:     auth.AreaServices,
	agorav1connect.OperatorServiceReplaceServicePodProcedure: auth.AreaServices,
	agorav1connect.OperatorServiceRemoveServiceProcedure:     auth.AreaServices,
	agorav1connect.OperatorServiceGossipKeyringProcedure:     auth.AreaGossip,
	// TeardownFramework: ownership or teardown_frameworks, in the handler.
	agorav1connect.OperatorServiceTeardownFrameworkProcedure: "-",
}

// operatorNeed is what an operator procedure needs: from the table, else
// by its name: Get/List/Explain/Watch are reads, Snapshot/Restore the
// snapshots area, and any other write every area ("*"), so a procedure
// added later is closed until someone places it.
func operatorNeed(procedure string) string {
	if need, ok := operatorNeeds[procedure]; ok {
		return need
	}
	method := procedure[strings.LastIndexByte(procedure, '/')+1:]
	for _, p := range []string{"Get", "List", "Explain", "Watch"} {
		if strings.HasPrefix(method, p) {
			return ""
		}
	}
	if strings.Contains(method, "Snapshot") || strings.HasPrefix(method, "Restore") {
		return auth.AreaSnapshots
	}
	return "*"
}

// authorizePath checks what the procedure alone decides: operator
// permissions and that AgentService callers are agents.
func (m *Master) authorizePath(id auth.Identity, path string) error {
	switch {
	case internal(id):
		return nil
	case strings.HasPrefix(path, "/"+agorav1connect.OperatorServiceName+"/"):
		if !m.sec.acl.Enabled() {
			return nil
		}
		switch need := operatorNeed(path); need {
		case "-":
			return nil
		case "":
			if !m.sec.acl.AllowOperatorRead(id.Principal) {
				return denied("principal %q may not make operator reads (%s)", id.Principal, path)
			}
		default:
			if !m.sec.acl.AllowOperatorWrite(id.Principal, need) {
				return denied("principal %q may not write operator area %q (%s)", id.Principal, need, path)
			}
		}
	case strings.HasPrefix(path, "/"+agorav1connect.AgentServiceName+"/"):
		if id.Agent == "" {
			return denied("principal %q is not an agent", id.Principal)
		}
	}
	return nil
}

func denied(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(format, args...))
}

// ownAgent checks that an authenticated agent acts for its own id.
func (m *security) ownAgent(ctx context.Context, agentID string) error {
	if !m.authOn() {
		return nil
	}
	id, _ := auth.IdentityFrom(ctx)
	if id.Agent == "" || id.Agent != agentID {
		return denied("principal %q may act only for agent %q, not %q", id.Principal, id.Agent, agentID)
	}
	return nil
}

// callerPrincipal is the principal a framework registers with: with
// authentication on, the authenticated one, and a principal the client
// names must be the same; without, whatever the client says.
func (m *security) callerPrincipal(ctx context.Context, claimed string) (string, error) {
	if !m.authOn() {
		return claimed, nil
	}
	id, _ := auth.IdentityFrom(ctx)
	p := id.Principal
	if internal(id) && claimed != "" {
		return claimed, nil // the master's own frameworks keep their principal (agora-service)
	}
	if claimed != "" && claimed != p {
		return "", denied("authenticated as %q, the framework may not claim principal %q", p, claimed)
	}
	return p, nil
}

// checkRoles checks that the caller may do act for every role.
func (m *security) checkRoles(ctx context.Context, act auth.Action, roles ...string) error {
	id, _ := auth.IdentityFrom(ctx)
	if !m.acl.Enabled() || internal(id) {
		return nil
	}
	p := id.Principal
	for _, role := range roles {
		if !m.acl.AllowRole(p, act, role) {
			return denied("principal %q may not %s role %q", p, act, role)
		}
	}
	return nil
}

// ownFramework checks that an authenticated caller is the principal the
// framework registered with.
func (m *security) ownFramework(ctx context.Context, fw *agorav1.Framework) error {
	if !m.authOn() {
		return nil
	}
	id, _ := auth.IdentityFrom(ctx)
	p := id.Principal
	if internal(id) {
		return nil
	}
	if owner := fw.GetInfo().GetPrincipal(); owner != p {
		return denied("framework %s belongs to principal %q, not %q", fw.GetId(), owner, p)
	}
	return nil
}

// mayTeardown checks an operator teardown: the owner, or a principal with
// teardown_frameworks.
func (m *security) mayTeardown(ctx context.Context, fw *agorav1.Framework) error {
	if !m.authOn() || m.ownFramework(ctx, fw) == nil {
		return nil
	}
	p, _ := auth.PrincipalFrom(ctx)
	if !m.acl.AllowTeardownOthers(p) {
		return denied("principal %q may not tear down framework %s of principal %q", p, fw.GetId(), fw.GetInfo().GetPrincipal())
	}
	return nil
}
