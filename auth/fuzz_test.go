package auth

import (
	"errors"
	"testing"
)

// FuzzParseAuthFile: any input either parses into an Authenticator whose
// every listed token hash and certificate name resolves to its principal,
// or fails with ErrBadFile; nothing panics.
func FuzzParseAuthFile(f *testing.F) {
	h := HashToken("t")
	f.Add([]byte(`{"principals":[{"name":"web","token_sha256":["` + h + `"],"cert_names":["w"]}]}`))
	f.Add([]byte(`{"principals":[{"name":"agent-a1","agent":"a1","cert_names":["a1"]}]}`))
	f.Add([]byte(`{"principals":[]}`))
	f.Add([]byte(`{"principals":[{"name":"x","token_sha256":["zz"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAuthFile(data)
		if err != nil {
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("error %v is not ErrBadFile", err)
			}
			return
		}
		if id, ok := a.Token(""); ok {
			t.Fatalf("the empty token authenticated as %+v", id)
		}
		for cn, id := range a.certs {
			if got, ok := a.Cert(cn); !ok || got != id || id.Principal == "" {
				t.Fatalf("cert %q: %+v %v", cn, got, ok)
			}
		}
	})
}

// FuzzParseACL: any input either parses or fails with ErrBadFile; a
// principal the file does not name gets only what "*" grants.
func FuzzParseACL(f *testing.F) {
	f.Add([]byte(`{"principals":{"web":{"register_roles":["web"]},"ops":{"operator_read":true,"operator_write":["*"]}}}`))
	f.Add([]byte(`{"principals":{"*":{"reserve_roles":["*"]}}}`))
	f.Add([]byte(`{"principals":{"a":{"operator_write":["raft","roles"],"teardown_frameworks":true}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseACL(data)
		if err != nil {
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("error %v is not ErrBadFile", err)
			}
			return
		}
		const stranger = "no-such-principal-in-any-file"
		if a.AllowOperatorRead(stranger) != a.any.OperatorRead {
			t.Fatal("a stranger's operator read differs from *'s")
		}
		if a.AllowOperatorWrite(stranger, AreaRaft) != grants(a.any.OperatorWrite, AreaRaft) {
			t.Fatal("a stranger's raft write differs from *'s")
		}
	})
}
