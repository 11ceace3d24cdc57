package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/tlsconf"
)

// With Config.TLS set, a master:
//   - serves its HTTP listener (Connect, gRPC, health, metrics) over TLS
//     1.2+ and requires a client certificate signed by the CA; any such
//     certificate may make operator and scheduler calls, but the
//     AgentService answers only certificates for agent.<cluster>.agora;
//   - runs the Raft transport over mutual TLS where both ends must prove
//     master.<cluster>.agora (tlsconf.PeerConfig);
//   - before it adds a master seen in gossip as a Raft voter (or
//     bootstraps with it), dials that member's Raft address over the same
//     mutual TLS: a gossip member that cannot prove the master identity on
//     its advertised Raft address is never a voter (verifyRaftPeer);
//   - advertises https:// URLs and calls other masters with its own
//     certificate.

// errNotMasterCert: Config.TLS holds a certificate that is not a master's.
var errNotMasterCert = errors.New("master: tls certificate is not valid for this cluster's master name")

// checkTLS refuses a TLS identity that could not serve as a master.
func (c *Config) checkTLS() error {
	if c.TLS == nil {
		return nil
	}
	if want := tlsconf.ServerName(tlsconf.RoleMaster, c.Cluster); !tlsconf.HasRole(c.TLS.Leaf(), tlsconf.RoleMaster, c.Cluster) {
		return fmt.Errorf("%w: %q is not valid for %s", errNotMasterCert, c.TLS.Leaf().Subject.CommonName, want)
	}
	return nil
}

// urlOf is the URL of a master's HTTP host:port, https with TLS.
func (m *Master) urlOf(hostport string) string {
	if m.cfg.TLS != nil {
		return "https://" + hostport
	}
	return "http://" + hostport
}

// secureListener wraps the HTTP listener in TLS when it is on. HTTP/2 is
// offered by ALPN, so gRPC and streams work as over cleartext h2c.
func (m *Master) secureListener(ln net.Listener) net.Listener {
	if m.cfg.TLS == nil {
		return ln
	}
	c := m.cfg.TLS.ServerConfig()
	c.NextProtos = []string{"h2", "http/1.1"}
	return tls.NewListener(ln, c)
}

// requireRole lets a request through only when TLS is off or the client
// proved role with its certificate; others get PermissionDenied in the
// caller's protocol (Connect or gRPC).
func (m *Master) requireRole(role string, next http.Handler) http.Handler {
	if m.cfg.TLS == nil {
		return next
	}
	ew := connect.NewErrorWriter()
	want := tlsconf.ServerName(role, m.cfg.Cluster)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || !tlsconf.HasRole(r.TLS.PeerCertificates[0], role, m.cfg.Cluster) {
			name := "(none)"
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				name = r.TLS.PeerCertificates[0].Subject.CommonName
			}
			m.log.Warn("refused a call: certificate lacks the role", "path", r.URL.Path, "cert", name, "want", want, "remote", r.RemoteAddr)
			_ = ew.Write(w, r, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("this call needs a certificate for %s", want)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newRaftTransport builds the Raft transport, over mutual TLS when on.
func (m *Master) newRaftTransport() (*RaftTransport, error) {
	if m.cfg.TLS == nil {
		return NewRaftTransport(m.cfg.RaftAddr, m.log)
	}
	return NewRaftTransportTLS(m.cfg.RaftAddr, m.log, m.cfg.TLS.PeerConfig(m.cfg.Cluster))
}

// NewRaftTransportTLS is NewRaftTransport over TLS with peer as the config
// of both ends (see tlsconf.Bundle.PeerConfig): an inbound connection's
// handshake runs on raft's first read of it, an outbound one's within the
// dial, so a peer that cannot prove its identity fails the dial.
func NewRaftTransportTLS(addr string, logger *slog.Logger, peer *tls.Config) (*RaftTransport, error) {
	if peer == nil {
		return nil, errors.New("master: raft transport: nil tls config")
	}
	return newRaftTransport(addr, logger, peer)
}

// secureInbound wraps an accepted Raft connection in TLS when on.
func (s *abortableStream) secureInbound(c net.Conn) net.Conn {
	if s.tls == nil {
		return c
	}
	return tls.Server(c, s.tls)
}

// secureOutbound runs the client handshake on a dialled Raft connection
// when TLS is on; it closes c when the handshake fails.
func (s *abortableStream) secureOutbound(c net.Conn, address string, timeout time.Duration) (net.Conn, error) {
	if s.tls == nil {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	tc := tls.Client(c, s.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("master: raft tls handshake with %s: %w", address, err)
	}
	return tc, nil
}

// verifyRaftPeer proves that the gossip member advertising raftAddr holds
// a master certificate for our cluster, by a mutual TLS handshake with
// its Raft transport. Without TLS there is nothing to prove.
func (m *Master) verifyRaftPeer(ctx context.Context, raftAddr string) error {
	if m.cfg.TLS == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, peerProbeTimeout)
	defer cancel()
	d := tls.Dialer{Config: m.cfg.TLS.PeerConfig(m.cfg.Cluster)}
	c, err := d.DialContext(ctx, "tcp", raftAddr)
	if err != nil {
		return fmt.Errorf("master: %s did not prove a master identity: %w", raftAddr, err)
	}
	return c.Close()
}

// peerHTTPClient calls other masters: with TLS it presents our master
// certificate and accepts only a master's. Connections are not kept: the
// calls are rare (bootstrap probes).
func (m *Master) peerHTTPClient() *http.Client {
	if m.cfg.TLS == nil {
		return http.DefaultClient
	}
	t := &http.Transport{TLSClientConfig: m.cfg.TLS.ClientConfig(m.cfg.Cluster), DisableKeepAlives: true, ForceAttemptHTTP2: true}
	return &http.Client{Transport: t}
}
