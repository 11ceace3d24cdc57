package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestPrincipalFromContext(t *testing.T) {
	if p, ok := PrincipalFrom(context.Background()); ok || p != "" {
		t.Fatalf("empty context: got %q, %v", p, ok)
	}
	ctx := NewContext(context.Background(), Identity{Principal: "web", Via: "token"})
	if p, ok := PrincipalFrom(ctx); !ok || p != "web" {
		t.Fatalf("got %q, %v; want web, true", p, ok)
	}
	if _, ok := PrincipalFrom(NewContext(context.Background(), Identity{})); ok {
		t.Fatal("an empty identity must not count as authenticated")
	}
}

func TestAuthFileMapsTokensAndCerts(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := NewToken()
	if tok == tok2 {
		t.Fatal("two tokens are equal")
	}
	data := fmt.Sprintf(`{"principals":[
		{"name":"web","token_sha256":[%q],"cert_names":["web-cert"]},
		{"name":"agent-a1","agent":"a1","token_sha256":[%q]}]}`, HashToken(tok), HashToken(tok2))
	a, err := ParseAuthFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := a.Token(tok); !ok || id.Principal != "web" || id.Agent != "" || id.Via != "token" {
		t.Fatalf("token: %+v %v", id, ok)
	}
	if id, ok := a.Token(tok2); !ok || id.Principal != "agent-a1" || id.Agent != "a1" {
		t.Fatalf("agent token: %+v %v", id, ok)
	}
	if id, ok := a.Cert("web-cert"); !ok || id.Principal != "web" || id.Via != "cert" {
		t.Fatalf("cert: %+v %v", id, ok)
	}
	for _, bad := range []string{"", tok + "x", HashToken(tok)} {
		if id, ok := a.Token(bad); ok {
			t.Fatalf("token %q authenticated as %+v", bad, id)
		}
	}
	if _, ok := a.Cert("other"); ok {
		t.Fatal("unknown certificate name authenticated")
	}
}

func TestAuthFileRejectsBadFiles(t *testing.T) {
	h := HashToken("x")
	for name, data := range map[string]string{
		"not json":        `{`,
		"unknown field":   `{"principals":[{"name":"a","token_sha256":["` + h + `"],"admin":true}]}`,
		"no credential":   `{"principals":[{"name":"a"}]}`,
		"bad name":        `{"principals":[{"name":"a b","token_sha256":["` + h + `"]}]}`,
		"empty name":      `{"principals":[{"name":"","token_sha256":["` + h + `"]}]}`,
		"short hash":      `{"principals":[{"name":"a","token_sha256":["abcd"]}]}`,
		"plain token":     `{"principals":[{"name":"a","token_sha256":["agora_secret"]}]}`,
		"duplicate name":  `{"principals":[{"name":"a","token_sha256":["` + h + `"]},{"name":"a","cert_names":["c"]}]}`,
		"shared hash":     `{"principals":[{"name":"a","token_sha256":["` + h + `"]},{"name":"b","token_sha256":["` + h + `"]}]}`,
		"shared cert":     `{"principals":[{"name":"a","cert_names":["c"]},{"name":"b","cert_names":["c"]}]}`,
		"wildcard agent":  `{"principals":[{"name":"a","agent":"*","token_sha256":["` + h + `"]}]}`,
		"empty cert name": `{"principals":[{"name":"a","cert_names":[""]}]}`,
	} {
		if _, err := ParseAuthFile([]byte(data)); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: got %v, want ErrBadFile", name, err)
		}
	}
}

func TestACL(t *testing.T) {
	a, err := ParseACL([]byte(`{"principals":{
		"web":{"register_roles":["web"],"reserve_roles":["web"],"create_volume_roles":["web"]},
		"ops":{"operator_read":true,"operator_write":["roles","drain"],"teardown_frameworks":true},
		"root":{"operator_write":["*"],"register_roles":["*"]},
		"*":{"register_roles":["public"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"web registers web", a.AllowRole("web", RegisterFramework, "web"), true},
		{"web registers batch", a.AllowRole("web", RegisterFramework, "batch"), false},
		{"web registers public (from *)", a.AllowRole("web", RegisterFramework, "public"), true},
		{"stranger registers public", a.AllowRole("stranger", RegisterFramework, "public"), true},
		{"stranger registers web", a.AllowRole("stranger", RegisterFramework, "web"), false},
		{"web reserves web", a.AllowRole("web", Reserve, "web"), true},
		{"web unreserves web (not granted)", a.AllowRole("web", Unreserve, "web"), false},
		{"web destroys volume (not granted)", a.AllowRole("web", DestroyVolume, "web"), false},
		{"root registers anything", a.AllowRole("root", RegisterFramework, "x"), true},
		{"web operator read", a.AllowOperatorRead("web"), false},
		{"ops operator read", a.AllowOperatorRead("ops"), true},
		{"ops writes roles", a.AllowOperatorWrite("ops", AreaRoles), true},
		{"ops writes raft", a.AllowOperatorWrite("ops", AreaRaft), false},
		{"root writes raft", a.AllowOperatorWrite("root", AreaRaft), true},
		{"ops tears down", a.AllowTeardownOthers("ops"), true},
		{"web tears down", a.AllowTeardownOthers("web"), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	var open *ACL
	if !open.AllowRole("x", DestroyVolume, "y") || !open.AllowOperatorWrite("x", AreaRaft) || !open.AllowOperatorRead("") || open.Enabled() {
		t.Fatal("a nil ACL must allow everything")
	}
}

func TestACLRejectsBadFiles(t *testing.T) {
	for name, data := range map[string]string{
		"not json":      `[`,
		"no principals": `{}`,
		"unknown field": `{"principals":{"a":{"superuser":true}}}`,
		"unknown area":  `{"principals":{"a":{"operator_write":["everything"]}}}`,
		"empty role":    `{"principals":{"a":{"register_roles":[""]}}}`,
		"bad name":      `{"principals":{"a/b":{}}}`,
	} {
		if _, err := ParseACL([]byte(data)); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: got %v, want ErrBadFile", name, err)
		}
	}
}
