package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
)

// WithTLS makes the client speak HTTPS to the masters with cfg (normally
// tlsconf.Bundle.ClientConfig: our certificate, the CA, and the master
// name the servers must prove). Every master address is used as https,
// whatever scheme it was given or advertised with. With WithHTTPClient as
// well, that client's transport is used and cfg only sets the scheme.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// NewHTTPClient is DefaultHTTPClient over TLS with cfg (HTTP/2 by ALPN);
// DefaultHTTPClient itself when cfg is nil. For callers that hand an
// *http.Client to code that builds its own Client (WithHTTPClient).
func NewHTTPClient(cfg *tls.Config) *http.Client { return newHTTPClient(cfg) }

// newHTTPClient is DefaultHTTPClient, over TLS (HTTP/2 by ALPN) when
// cfg is set.
func newHTTPClient(cfg *tls.Config) *http.Client { return &http.Client{Transport: h2Transport(cfg)} }

// norm is NormalizeAddr, with the https scheme when the client uses TLS.
func (c *Client) norm(addr string) string {
	addr = NormalizeAddr(addr)
	if c.opts.tls != nil && strings.HasPrefix(addr, "http://") {
		addr = "https://" + strings.TrimPrefix(addr, "http://")
	}
	return addr
}

// tlsRefused reports whether err is a TLS handshake refusal: the master's
// certificate failed our checks, or the master refused ours. Nothing was
// applied, and retrying with the same certificates cannot succeed.
func tlsRefused(err error) bool {
	var verr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	if errors.As(err, &verr) || errors.As(err, &hostErr) || errors.As(err, &authErr) {
		return true
	}
	// crypto/tls reports an alert from the peer (bad_certificate,
	// certificate_required, unknown_ca) as this OpError.
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
