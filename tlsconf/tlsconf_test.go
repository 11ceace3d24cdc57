package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustBundle(t *testing.T, ca *CA, req Request) *Bundle {
	t.Helper()
	cert, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Bundle(cert)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handshake runs a TLS handshake between the two configs over a pipe and
// returns the server's and the client's errors.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, c := tls.Server(a, server), tls.Client(b, client)
	done := make(chan error, 1)
	go func() {
		err := s.HandshakeContext(ctx)
		// A failed side closes, so the other never waits for an alert.
		_ = s.Close()
		done <- err
	}()
	cerr = c.HandshakeContext(ctx)
	if cerr == nil {
		// TLS 1.3: the client finishes before the server has checked its
		// certificate; a read sees the server's verdict.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) {
			cerr = err
		}
	}
	_ = c.Close()
	serr = <-done
	return serr, cerr
}

func TestClientWithCertReachesMaster(t *testing.T) {
	ca := mustCA(t)
	m := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1"})
	cl := mustBundle(t, ca, Request{Role: RoleClient, Name: "alice"})
	serr, cerr := handshake(t, m.ServerConfig(), cl.ClientConfig(""))
	if serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v; want both nil", serr, cerr)
	}
}

func TestClientWithoutCertRefused(t *testing.T) {
	ca := mustCA(t)
	m := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1"})
	cfg := m.ClientConfig("")
	cfg.Certificates = nil
	serr, _ := handshake(t, m.ServerConfig(), cfg)
	if serr == nil {
		t.Fatal("a client without a certificate got through")
	}
}

func TestWrongCARefused(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	m := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1"})
	stranger := mustBundle(t, other, Request{Role: RoleClient, Name: "mallory"})
	// The stranger trusts our CA, so only our check of its cert stops it.
	cfg := stranger.ClientConfig("")
	cfg.RootCAs = ca.Pool()
	if serr, _ := handshake(t, m.ServerConfig(), cfg); serr == nil {
		t.Error("a client certificate from another CA was accepted")
	}
	// A master from another CA is refused by our clients.
	fake := mustBundle(t, other, Request{Role: RoleMaster, Name: "m1"})
	cl := mustBundle(t, ca, Request{Role: RoleClient, Name: "alice"})
	if _, cerr := handshake(t, fake.ServerConfig(), cl.ClientConfig("")); cerr == nil {
		t.Error("a master certificate from another CA was accepted")
	}
}

func TestExpiredRefused(t *testing.T) {
	ca := mustCA(t)
	m := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1"})
	past := time.Now().Add(-48 * time.Hour)
	old := mustBundle(t, ca, Request{Role: RoleClient, Name: "alice", NotBefore: past, NotAfter: past.Add(time.Hour)})
	if serr, _ := handshake(t, m.ServerConfig(), old.ClientConfig("")); serr == nil {
		t.Error("an expired client certificate was accepted")
	}
	oldMaster := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1", NotBefore: past, NotAfter: past.Add(time.Hour)})
	cl := mustBundle(t, ca, Request{Role: RoleClient, Name: "alice"})
	if _, cerr := handshake(t, oldMaster.ServerConfig(), cl.ClientConfig("")); cerr == nil {
		t.Error("an expired master certificate was accepted")
	}
}

func TestWrongRoleRefused(t *testing.T) {
	ca := mustCA(t)
	m1 := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m1"})
	m2 := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m2"})
	agent := mustBundle(t, ca, Request{Role: RoleAgent, Name: "a1"})
	client := mustBundle(t, ca, Request{Role: RoleClient, Name: "alice"})
	otherCluster := mustBundle(t, ca, Request{Role: RoleMaster, Name: "m9", Cluster: "prod"})

	if serr, cerr := handshake(t, m1.PeerConfig(""), m2.PeerConfig("")); serr != nil || cerr != nil {
		t.Fatalf("master to master: server %v, client %v", serr, cerr)
	}
	for name, b := range map[string]*Bundle{"agent": agent, "client": client, "other cluster": otherCluster} {
		// b dials a master's raft port.
		serr, _ := handshake(t, m1.PeerConfig(""), b.PeerConfig(""))
		if !errors.Is(serr, ErrWrongRole) {
			t.Errorf("%s dialing a master peer: server error %v, want ErrWrongRole", name, serr)
		}
		// A master dials b, which serves with its certificate.
		if _, cerr := handshake(t, b.PeerConfig(""), m1.PeerConfig("")); cerr == nil {
			t.Errorf("a master accepted a %s certificate as a master peer", name)
		}
		// A client of the masters refuses b as a master.
		if _, cerr := handshake(t, b.ServerConfig(), client.ClientConfig("")); cerr == nil {
			t.Errorf("a client accepted a %s certificate as a master", name)
		}
	}
	if !HasRole(agent.Leaf(), RoleAgent, "") || HasRole(agent.Leaf(), RoleMaster, "") || HasRole(client.Leaf(), RoleAgent, "") {
		t.Error("HasRole disagrees with the issued roles")
	}
	if !HasRole(otherCluster.Leaf(), RoleMaster, "prod") || HasRole(otherCluster.Leaf(), RoleMaster, "") {
		t.Error("HasRole ignores the cluster")
	}
}

func TestIssueRejectsBadRole(t *testing.T) {
	ca := mustCA(t)
	if _, err := ca.Issue(Request{Role: "admin", Name: "x"}); !errors.Is(err, ErrBadRole) {
		t.Fatalf("err %v, want ErrBadRole", err)
	}
}

func TestFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	if err := WriteCA(dir, ca); err != nil {
		t.Fatal(err)
	}
	if err := WriteCA(dir, ca); err == nil {
		t.Error("WriteCA overwrote a CA key")
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := loaded.Issue(Request{Role: RoleAgent, Name: "a1", Hosts: []string{"127.0.0.1", "node1"}})
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := WriteCert(dir, "a1", cert)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file %v mode %v, want 0600", err, fi.Mode())
	}
	b, err := Files{CA: filepath.Join(dir, CACertFile), Cert: certPath, Key: keyPath}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !HasRole(b.Leaf(), RoleAgent, "") || b.Leaf().VerifyHostname("node1") != nil || b.Leaf().VerifyHostname("127.0.0.1") != nil {
		t.Errorf("loaded certificate names %v %v", b.Leaf().DNSNames, b.Leaf().IPAddresses)
	}
	if b, err := (Files{}).Load(); b != nil || err != nil {
		t.Errorf("no files: %v %v, want TLS off", b, err)
	}
	if _, err := (Files{CA: "x"}).Load(); !errors.Is(err, ErrIncomplete) {
		t.Errorf("incomplete: %v", err)
	}
	if _, err := (Files{CA: filepath.Join(dir, "nope.pem"), Cert: certPath, Key: keyPath}).Load(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA: %v, want ErrNotExist", err)
	}
}
