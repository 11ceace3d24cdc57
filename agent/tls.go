package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/rpc/client"
	"github.com/agora-sched/agora/tlsconf"
)

// errNotAgentCert: Config.TLS holds a certificate the masters would not
// accept from an agent.
var errNotAgentCert = errors.New("agent: tls certificate is not valid for this cluster's agent name")

// checkTLS refuses a TLS identity the masters would refuse.
func (c *Config) checkTLS() error {
	if c.TLS == nil {
		return nil
	}
	if !tlsconf.HasRole(c.TLS.Leaf(), tlsconf.RoleAgent, c.Cluster) {
		return fmt.Errorf("%w: %q is not valid for %s", errNotAgentCert, c.TLS.Leaf().Subject.CommonName, tlsconf.ServerName(tlsconf.RoleAgent, c.Cluster))
	}
	return nil
}

// clientOptions adds TLS to the options of the agent's client of the
// masters when it is on.
func (c *Config) clientOptions(opts ...client.Option) []client.Option {
	if c.TLS != nil {
		opts = append(opts, client.WithTLS(c.TLS.ClientConfig(c.Cluster)))
	}
	return append(opts, client.WithToken(c.Token))
}

// secureListener wraps the /health and /metrics listener in TLS (client
// certificate required) when it is on.
func (c *Config) secureListener(ln net.Listener) net.Listener {
	if c.TLS == nil {
		return ln
	}
	cfg := c.TLS.ServerConfig()
	cfg.NextProtos = []string{"http/1.1"}
	return tls.NewListener(ln, cfg)
}

// Gossip returns the agent's gossip member, for tests and tooling (a
// member's own keyring: Gossip().LocalKeys()).
func (a *Agent) Gossip() *gossip.Pool { return a.pool }
