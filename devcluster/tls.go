package devcluster

import (
	"crypto/tls"
	"fmt"
	"path/filepath"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/tlsconf"
)

// setupTLS makes the cluster's CA when Options.TLS is set.
func (c *Cluster) setupTLS() error {
	if !c.opts.TLS {
		return nil
	}
	ca, err := tlsconf.NewCA("agora devcluster CA", 0)
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	if err := tlsconf.WriteCA(c.TLSDir(), ca); err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	c.ca = ca
	return nil
}

// masterTLS gives a master's config a certificate for its cluster when
// TLS is on and the MasterConfig hook set none.
func (c *Cluster) masterTLS(cfg *master.Config) error {
	if c.ca == nil || cfg.TLS != nil {
		return nil
	}
	cert, err := c.ca.Issue(tlsconf.Request{Role: tlsconf.RoleMaster, Name: cfg.ID, Cluster: cfg.Cluster, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	cfg.TLS, err = c.ca.Bundle(cert)
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	return nil
}

// bundle issues a certificate for role and name; nil without TLS.
func (c *Cluster) bundle(role, name string) (*tlsconf.Bundle, error) {
	if c.ca == nil {
		return nil, nil
	}
	cert, err := c.ca.Issue(tlsconf.Request{Role: role, Name: name, Cluster: c.cluster(), Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	b, err := c.ca.Bundle(cert)
	if err != nil {
		return nil, fmt.Errorf("devcluster: %w", err)
	}
	return b, nil
}

func (c *Cluster) cluster() string {
	if len(c.cfgs) > 0 && c.cfgs[0].Cluster != "" {
		return c.cfgs[0].Cluster
	}
	return tlsconf.DefaultCluster
}

func (c *Cluster) scheme() string {
	if c.ca != nil {
		return "https://"
	}
	return "http://"
}

// TLSDir is where the CA (ca.pem, ca-key.pem) and the files IssueTLS
// writes live: Dir()/tls.
func (c *Cluster) TLSDir() string { return filepath.Join(c.dir, "tls") }

// CA returns the cluster's CA; nil without TLS.
func (c *Cluster) CA() *tlsconf.CA { return c.ca }

// IssueTLS writes a certificate for role and name signed by the cluster's
// CA to TLSDir() and returns the files, for the CLI and the SDK.
func (c *Cluster) IssueTLS(role, name string) (tlsconf.Files, error) {
	if c.ca == nil {
		return tlsconf.Files{}, fmt.Errorf("devcluster: TLS is off")
	}
	cert, err := c.ca.Issue(tlsconf.Request{Role: role, Name: name, Cluster: c.cluster()})
	if err != nil {
		return tlsconf.Files{}, fmt.Errorf("devcluster: %w", err)
	}
	certPath, keyPath, err := tlsconf.WriteCert(c.TLSDir(), name, cert)
	if err != nil {
		return tlsconf.Files{}, fmt.Errorf("devcluster: %w", err)
	}
	return tlsconf.Files{CA: filepath.Join(c.TLSDir(), tlsconf.CACertFile), Cert: certPath, Key: keyPath}, nil
}

// ClientTLS returns a client tls.Config with a fresh certificate for role
// and name, checking the masters' certificates; nil without TLS.
func (c *Cluster) ClientTLS(role, name string) (*tls.Config, error) {
	b, err := c.bundle(role, name)
	if err != nil || b == nil {
		return nil, err
	}
	return b.ClientConfig(c.cluster()), nil
}
