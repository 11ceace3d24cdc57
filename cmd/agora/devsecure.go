package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/rpc/client"
	"github.com/agora-sched/agora/tlsconf"
)

// devSecurePrincipals are the principals `agora dev --secure` makes:
// ops operates the cluster, dev runs frameworks in any role, viewer only
// reads (agents get one principal each, bound to their id).
func devSecurePrincipals() map[string]auth.Rules {
	all := []string{"*"}
	return map[string]auth.Rules{
		"ops":    {OperatorRead: true, OperatorWrite: []string{"*"}, TeardownFrameworks: true},
		"dev":    {RegisterRoles: all, ReserveRoles: all, UnreserveRoles: all, CreateVolumeRoles: all, DestroyVolumeRoles: all},
		"viewer": {OperatorRead: true},
	}
}

// devSecure is what `agora dev --secure` sets up before the cluster
// starts: a gossip key, tokens, the auth and ACL files (the CA and
// certificates come with devcluster.Options.TLS).
type devSecure struct {
	auth      *devcluster.Auth
	keyring   [][]byte
	gossipKey string
	authPath  string
	aclPath   string
}

func newDevSecure(dir string, agentIDs []string) (*devSecure, error) {
	key, err := gossip.NewKey()
	if err != nil {
		return nil, err
	}
	raw, err := gossip.ParseKey(key)
	if err != nil {
		return nil, err
	}
	a, err := devcluster.NewAuth(agentIDs, devSecurePrincipals(), true)
	if err != nil {
		return nil, err
	}
	a.AuditLog = true
	authPath, aclPath, err := a.WriteFiles(filepath.Join(dir, "auth"))
	if err != nil {
		return nil, err
	}
	return &devSecure{auth: a, keyring: [][]byte{raw}, gossipKey: key, authPath: authPath, aclPath: aclPath}, nil
}

// print tells how to reach the secure cluster: the CLI's environment
// with a client certificate and the ops token, and the other tokens.
func (s *devSecure) print(w io.Writer, c *devcluster.Cluster) error {
	files, err := c.IssueTLS(tlsconf.RoleClient, "cli")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "secure: TLS, gossip encryption, authentication, ACLs and audit logs are on; files in %s\n", c.Dir())
	fmt.Fprintf(w, "  auth file %s, ACL file %s, audit logs %s\n", s.authPath, s.aclPath, c.AuditLogPath("m*"))
	fmt.Fprintf(w, "  to use the CLI as ops (every operator right):\n")
	fmt.Fprintf(w, "    export AGORA_ADDR=%s\n", c.Addrs()[0])
	fmt.Fprintf(w, "    export %s=%s %s=%s %s=%s\n", tlsconf.EnvCA, files.CA, tlsconf.EnvCert, files.Cert, tlsconf.EnvKey, files.Key)
	fmt.Fprintf(w, "    export %s=%s\n", client.EnvToken, s.auth.Tokens["ops"])
	fmt.Fprintf(w, "  tokens: dev (frameworks, any role) %s, viewer (operator reads) %s\n", s.auth.Tokens["dev"], s.auth.Tokens["viewer"])
	fmt.Fprintf(w, "  gossip key: %s\n", s.gossipKey)
	return nil
}
