package master

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// BenchmarkAuthenticate is the edge's per-call cost of authentication
// and the ACL: a bearer token looked up by its SHA-256 among 1000
// principals, then the operator-write check, around a handler that does
// nothing:
//
//	go test -run '^$' -bench Authenticate ./master/
func BenchmarkAuthenticate(b *testing.B) {
	var f auth.AuthFile
	var tok string
	for i := range 1000 {
		t, err := auth.NewToken()
		if err != nil {
			b.Fatal(err)
		}
		tok = t
		f.Principals = append(f.Principals, auth.Entry{Name: "p" + strconv.Itoa(i), TokenSHA256: []string{auth.HashToken(t)}})
	}
	authn, err := auth.NewAuthenticator(f)
	if err != nil {
		b.Fatal(err)
	}
	last := f.Principals[len(f.Principals)-1].Name
	acl, err := auth.NewACL(auth.ACLFile{Principals: map[string]auth.Rules{last: {OperatorWrite: []string{auth.AreaRoles}}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"off", func(*Config) {}},
		{"token+acl", func(c *Config) { c.Auth, c.ACL = authn, acl }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := Config{ID: "b", DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}
			mode.cfg(&cfg)
			m, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			h := m.authenticate(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
			req := httptest.NewRequest(http.MethodPost, agorav1connect.OperatorServiceSetRoleProcedure, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/proto")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		})
	}
}
