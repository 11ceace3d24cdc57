package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agora-sched/agora/atomicfile"
)

// File names WriteCA and WriteCert use inside their directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// Default validities of the development CA and its certificates.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
)

// CA is a certificate authority that can issue role certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed ECDSA P-256 CA valid for validity from now
// (DefaultCAValidity when 0).
func NewCA(name string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"agora"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Request describes a certificate to issue.
type Request struct {
	// Role is RoleMaster, RoleAgent or RoleClient.
	Role string
	// Name is the subject's common name (a master or agent id, a user).
	Name string
	// Cluster is the cluster name; "" means DefaultCluster.
	Cluster string
	// Hosts are extra DNS names or IP addresses the certificate is valid
	// for (a master's hostname, for curl).
	Hosts []string
	// NotBefore and NotAfter bound validity; zero means now (minus a
	// minute of clock skew) and NotBefore + DefaultCertValidity.
	NotBefore, NotAfter time.Time
}

// Issue makes a key pair and a certificate for req signed by the CA.
// Masters and agents get server and client authentication; clients only
// client authentication, so a client certificate cannot serve.
func (ca *CA) Issue(req Request) (tls.Certificate, error) {
	if !ValidRole(req.Role) {
		return tls.Certificate{}, fmt.Errorf("%w, not %q", ErrBadRole, req.Role)
	}
	if req.Name == "" {
		return tls.Certificate{}, errors.New("tlsconf: certificate name is required")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconf: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	nb, na := req.NotBefore, req.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Minute)
	}
	if na.IsZero() {
		na = nb.Add(DefaultCertValidity)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{"agora"}, OrganizationalUnit: []string{req.Role}},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName(req.Role, req.Cluster)},
	}
	if req.Role != RoleClient {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconf: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsconf: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Bundle returns a Bundle of the CA and a certificate it issued.
func (ca *CA) Bundle(cert tls.Certificate) (*Bundle, error) {
	return NewBundle(ca.Pool(), cert)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: serial number: %w", err)
	}
	return s, nil
}

// WriteCA writes the CA to dir/ca.pem and dir/ca-key.pem (key mode 0600),
// creating dir. It refuses to overwrite an existing CA key.
func WriteCA(dir string, ca *CA) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return fmt.Errorf("tlsconf: %s exists; not overwriting a CA key", keyPath)
	}
	keyPEM, err := keyToPEM(ca.Key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("tlsconf: write CA key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, CACertFile), certToPEM(ca.Cert.Raw), 0o644); err != nil {
		return fmt.Errorf("tlsconf: write CA certificate: %w", err)
	}
	return nil
}

// LoadCA reads a CA written by WriteCA from dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("tlsconf: CA key in %s is not ECDSA", dir)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tlsconf: parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("tlsconf: %s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: cert, Key: key}, nil
}

// WriteCert writes cert to dir/NAME.pem and its key to dir/NAME-key.pem
// (mode 0600), creating dir, and returns the two paths.
func WriteCert(dir, name string, cert tls.Certificate) (certPath, keyPath string, err error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", "", fmt.Errorf("tlsconf: %q is not usable as a file name", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("tlsconf: %w", err)
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return "", "", errors.New("tlsconf: certificate key is not ECDSA")
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("tlsconf: write key: %w", err)
	}
	if err := atomicfile.Write(certPath, certToPEM(cert.Certificate[0]), 0o644); err != nil {
		return "", "", fmt.Errorf("tlsconf: write certificate: %w", err)
	}
	return certPath, keyPath, nil
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certToPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
