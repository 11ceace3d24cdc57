package devcluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/master"
)

// Auth turns on authentication, and ACLs with ACL set, in a dev cluster:
// every master gets the auth file and the ACL, every agent the token of
// its principal, and with AuditLog each master appends to
// Dir()/audit-<id>.jsonl. Build one with NewAuth.
type Auth struct {
	// File lists the principals (token hashes, agents' bindings).
	File auth.AuthFile
	// ACL, optional, restricts the principals; nil runs open.
	ACL *auth.ACLFile
	// Tokens maps each principal to its token.
	Tokens map[string]string
	// AgentTokens maps an agent id to the token of its principal.
	AgentTokens map[string]string
	// AuditLog makes each master write an audit log in Dir().
	AuditLog bool
}

// AgentPrincipal is the principal NewAuth makes for an agent.
func AgentPrincipal(agentID string) string { return "agent-" + agentID }

// NewAuth mints a token for each principal of rules and a principal and
// token for each agent id (bound to that id, AgentPrincipal). With acl,
// rules become the ACL; without, the cluster authenticates but runs open.
func NewAuth(agentIDs []string, rules map[string]auth.Rules, acl bool) (*Auth, error) {
	a := &Auth{Tokens: map[string]string{}, AgentTokens: map[string]string{}}
	add := func(name, agentID string) error {
		tok, err := auth.NewToken()
		if err != nil {
			return fmt.Errorf("devcluster: %w", err)
		}
		a.Tokens[name] = tok
		a.File.Principals = append(a.File.Principals, auth.Entry{Name: name, Agent: agentID, TokenSHA256: []string{auth.HashToken(tok)}})
		if agentID != "" {
			a.AgentTokens[agentID] = tok
		}
		return nil
	}
	names := make([]string, 0, len(rules))
	for n := range rules {
		if n != "*" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := add(n, ""); err != nil {
			return nil, err
		}
	}
	for _, id := range agentIDs {
		if err := add(AgentPrincipal(id), id); err != nil {
			return nil, err
		}
	}
	if acl {
		a.ACL = &auth.ACLFile{Principals: rules}
	}
	return a, nil
}

// config fills a master's authentication settings.
func (a *Auth) config(cfg *master.Config, dir string) error {
	if a == nil {
		return nil
	}
	authn, err := auth.NewAuthenticator(a.File)
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	cfg.Auth = authn
	if a.ACL != nil {
		if cfg.ACL, err = auth.NewACL(*a.ACL); err != nil {
			return fmt.Errorf("devcluster: %w", err)
		}
	}
	if a.AuditLog {
		cfg.AuditLog = filepath.Join(dir, "audit-"+cfg.ID+".jsonl")
	}
	return nil
}

// WriteFiles writes the auth file (auth.json) and, with an ACL, the ACL
// file (acl.json) to dir, mode 0600, for masters run as processes and for
// `agora dev --secure`. aclPath is "" without an ACL.
func (a *Auth) WriteFiles(dir string) (authPath, aclPath string, err error) {
	write := func(name string, v any) (string, error) {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return "", fmt.Errorf("devcluster: %w", err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
			return "", fmt.Errorf("devcluster: %w", err)
		}
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("devcluster: %w", err)
	}
	if authPath, err = write("auth.json", a.File); err != nil {
		return "", "", err
	}
	if a.ACL != nil {
		if aclPath, err = write("acl.json", a.ACL); err != nil {
			return "", "", err
		}
	}
	return authPath, aclPath, nil
}

// AuditLogPath is master id's audit log (with Auth.AuditLog).
func (c *Cluster) AuditLogPath(id string) string {
	return filepath.Join(c.dir, "audit-"+id+".jsonl")
}
