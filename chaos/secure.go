package chaos

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/rpc/client"
	"github.com/agora-sched/agora/tlsconf"
)

// A secure process-tier run (ProcessOptions.Secure, `agora chaos
// --secure`): every master and agent runs with mutual TLS, a gossip key,
// an auth file, an ACL file and an audit log, all made under Dir/secure;
// the chaos process's clients and frameworks use a client certificate and
// the token of principal "chaos", whom the ACL grants everything the
// workload does. Agents authenticate with their own tokens, bound to
// their ids.

// chaosPrincipal is the principal of the chaos process's clients.
const chaosPrincipal = "chaos"

// credentials are what the chaos process's clients present.
type credentials struct {
	tls   *tls.Config
	files tlsconf.Files
	token string
}

// secureSetup holds the files of a secure cluster.
type secureSetup struct {
	dir       string
	ca        tlsconf.Files
	gossipKey string
	authFile  string
	aclFile   string
	agentTok  []string
	client    *credentials
	// limitedTok is the token of principal "limited", whom the ACL lets
	// register frameworks in role "limited" only (for the tests' refusals).
	limitedTok string
}

func newSecureSetup(dir string, masters, agents int) (*secureSetup, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	ca, err := tlsconf.NewCA("agora chaos CA", 0)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	if err := tlsconf.WriteCA(dir, ca); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	s := &secureSetup{dir: dir}
	s.ca.CA = filepath.Join(dir, tlsconf.CACertFile)
	if s.gossipKey, err = gossip.NewKey(); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	issue := func(role, name string) (tlsconf.Files, error) {
		nb := time.Now().Add(-time.Minute)
		cert, err := ca.Issue(tlsconf.Request{Role: role, Name: name, NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)})
		if err != nil {
			return tlsconf.Files{}, fmt.Errorf("chaos: %w", err)
		}
		certPath, keyPath, err := tlsconf.WriteCert(dir, name, cert)
		if err != nil {
			return tlsconf.Files{}, fmt.Errorf("chaos: %w", err)
		}
		return tlsconf.Files{CA: s.ca.CA, Cert: certPath, Key: keyPath}, nil
	}
	for i := range masters {
		if _, err := issue(tlsconf.RoleMaster, fmt.Sprintf("m%d", i)); err != nil {
			return nil, err
		}
	}
	for i := range agents {
		if _, err := issue(tlsconf.RoleAgent, fmt.Sprintf("a%d", i)); err != nil {
			return nil, err
		}
	}
	cf, err := issue(tlsconf.RoleClient, chaosPrincipal)
	if err != nil {
		return nil, err
	}
	b, err := cf.Load()
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var af auth.AuthFile
	mint := func(name, agentID string) (string, error) {
		tok, err := auth.NewToken()
		if err != nil {
			return "", fmt.Errorf("chaos: %w", err)
		}
		af.Principals = append(af.Principals, auth.Entry{Name: name, Agent: agentID, TokenSHA256: []string{auth.HashToken(tok)}})
		return tok, nil
	}
	tok, err := mint(chaosPrincipal, "")
	if err != nil {
		return nil, err
	}
	s.client = &credentials{tls: b.ClientConfig(tlsconf.DefaultCluster), files: cf, token: tok}
	for i := range agents {
		id := fmt.Sprintf("a%d", i)
		t, err := mint("agent-"+id, id)
		if err != nil {
			return nil, err
		}
		s.agentTok = append(s.agentTok, t)
	}
	if s.limitedTok, err = mint("limited", ""); err != nil {
		return nil, err
	}
	all := []string{"*"}
	acl := auth.ACLFile{Principals: map[string]auth.Rules{chaosPrincipal: {
		RegisterRoles: all, ReserveRoles: all, UnreserveRoles: all, CreateVolumeRoles: all, DestroyVolumeRoles: all,
		TeardownFrameworks: true, OperatorRead: true, OperatorWrite: all},
		"limited": {RegisterRoles: []string{"limited"}}}}
	write := func(name string, v any) (string, error) {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return "", fmt.Errorf("chaos: %w", err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return "", fmt.Errorf("chaos: %w", err)
		}
		return p, nil
	}
	if s.authFile, err = write("auth.json", af); err != nil {
		return nil, err
	}
	if s.aclFile, err = write("acl.json", acl); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *secureSetup) tlsArgs(name string) []string {
	return []string{"--tls-ca", s.ca.CA, "--tls-cert", filepath.Join(s.dir, name+".pem"), "--tls-key", filepath.Join(s.dir, name+"-key.pem"),
		"--gossip-key", s.gossipKey}
}

// masterArgs are master i's security flags; none when s is nil.
func (s *secureSetup) masterArgs(i int) []string {
	if s == nil {
		return nil
	}
	name := fmt.Sprintf("m%d", i)
	return append(s.tlsArgs(name), "--auth-file", s.authFile, "--acl-file", s.aclFile,
		"--audit-log", filepath.Join(s.dir, "audit-"+name+".jsonl"))
}

// agentArgs are agent i's security flags; none when s is nil.
func (s *secureSetup) agentArgs(i int) []string {
	if s == nil {
		return nil
	}
	return append(s.tlsArgs(fmt.Sprintf("a%d", i)), "--token", s.agentTok[i])
}

// credentials are the chaos process's client credentials; nil when the
// cluster is not secure.
func (c *processCluster) credentials() *credentials { return c.creds }

type credentialed interface{ credentials() *credentials }

func credsOf(c Cluster) *credentials {
	if cc, ok := c.(credentialed); ok {
		return cc.credentials()
	}
	return nil
}

// newClient is client.New with the cluster's client credentials.
func newClient(c Cluster, addrs string, opts ...client.Option) *client.Client {
	if cr := credsOf(c); cr != nil {
		opts = append(opts, client.WithTLS(cr.tls), client.WithToken(cr.token))
	}
	return client.New(addrs, opts...)
}

// secureFramework gives a workload framework the cluster's credentials.
func secureFramework(c Cluster, cfg *framework.Config) {
	if cr := credsOf(c); cr != nil {
		cfg.HTTPClient = client.NewHTTPClient(cr.tls)
		cfg.TLS = cr.files
		cfg.Token = cr.token
	}
}
