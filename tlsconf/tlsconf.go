package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Roles a certificate can carry.
const (
	RoleMaster = "master"
	RoleAgent  = "agent"
	RoleClient = "client"
)

// Environment variables read by FilesFromEnv.
const (
	EnvCA   = "AGORA_TLS_CA"
	EnvCert = "AGORA_TLS_CERT"
	EnvKey  = "AGORA_TLS_KEY"
)

// DefaultCluster is the cluster name used when none is given.
const DefaultCluster = "agora"

// Errors of this package.
var (
	// ErrBadRole: a role name that is not master, agent or client.
	ErrBadRole = errors.New("tlsconf: role must be master, agent or client")
	// ErrIncomplete: some but not all of CA, cert and key were given.
	ErrIncomplete = errors.New("tlsconf: --tls-ca, --tls-cert and --tls-key go together")
	// ErrWrongRole: the peer's certificate does not carry the role needed.
	ErrWrongRole = errors.New("tlsconf: peer certificate has the wrong role")
)

// ValidRole reports whether role is RoleMaster, RoleAgent or RoleClient.
func ValidRole(role string) bool {
	return role == RoleMaster || role == RoleAgent || role == RoleClient
}

// ServerName is the DNS name a certificate for role in cluster carries:
// "master.prod.agora". An empty cluster means DefaultCluster.
func ServerName(role, cluster string) string {
	if cluster == "" {
		cluster = DefaultCluster
	}
	return role + "." + cluster + ".agora"
}

// HasRole reports whether cert (already verified against the CA) is valid
// for role in cluster.
func HasRole(cert *x509.Certificate, role, cluster string) bool {
	return cert != nil && cert.VerifyHostname(ServerName(role, cluster)) == nil
}

// Files names the PEM files of a TLS identity. The zero value means TLS
// off.
type Files struct {
	// CA is the CA certificate that signs every peer.
	CA string
	// Cert is this process's certificate, Key its private key.
	Cert, Key string
}

// FilesFromEnv reads AGORA_TLS_CA, AGORA_TLS_CERT and AGORA_TLS_KEY.
func FilesFromEnv() Files {
	return Files{CA: os.Getenv(EnvCA), Cert: os.Getenv(EnvCert), Key: os.Getenv(EnvKey)}
}

// Enabled reports whether any file is named.
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Load reads the files. It returns nil, nil when none is named, and
// ErrIncomplete when only some are.
func (f Files) Load() (*Bundle, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, ErrIncomplete
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tlsconf: %s holds no PEM certificate", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: load certificate %s: %w", f.Cert, err)
	}
	return NewBundle(pool, cert)
}

// Bundle is a loaded TLS identity: the CA pool and our certificate.
type Bundle struct {
	pool *x509.CertPool
	cert tls.Certificate
}

// NewBundle builds a Bundle from a CA pool and a certificate whose Leaf
// is parsed here when unset.
func NewBundle(pool *x509.CertPool, cert tls.Certificate) (*Bundle, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("tlsconf: certificate is empty")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tlsconf: parse certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	return &Bundle{pool: pool, cert: cert}, nil
}

// Leaf returns our certificate, parsed.
func (b *Bundle) Leaf() *x509.Certificate { return b.cert.Leaf }

// ServerConfig is for a listener: TLS 1.2 or later, and a client
// certificate signed by the CA is required. Roles are checked by the
// handlers that need one (HasRole).
func (b *Bundle) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.cert},
		ClientCAs:    b.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// ClientConfig is for a client of the masters: it presents our
// certificate and accepts only a server certificate signed by the CA for
// master.<cluster>.agora, whatever address was dialled.
func (b *Bundle) ClientConfig(cluster string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.cert},
		RootCAs:      b.pool,
		ServerName:   ServerName(RoleMaster, cluster),
	}
}

// PeerConfig is for both ends of a connection between masters (the Raft
// transport): each side must present a CA-signed certificate for
// master.<cluster>.agora, and the other checks it.
func (b *Bundle) PeerConfig(cluster string) *tls.Config {
	c := b.ServerConfig()
	c.RootCAs = b.pool
	c.ServerName = ServerName(RoleMaster, cluster)
	c.VerifyConnection = RequireRole(RoleMaster, cluster)
	return c
}

// RequireRole returns a tls.Config.VerifyConnection function that refuses
// a peer whose verified certificate lacks role.
func RequireRole(role, cluster string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 {
			return fmt.Errorf("%w: no verified certificate, want %s", ErrWrongRole, ServerName(role, cluster))
		}
		if !HasRole(cs.PeerCertificates[0], role, cluster) {
			return fmt.Errorf("%w: %q is not valid for %s", ErrWrongRole, cs.PeerCertificates[0].Subject.CommonName, ServerName(role, cluster))
		}
		return nil
	}
}
