package gossip

import (
	"encoding/base64"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestParseKey(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ParseKey(k); err != nil || len(b) != 32 {
		t.Fatalf("NewKey %q: %d bytes, %v", k, len(b), err)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 15))} {
		if _, err := ParseKey(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKey(%q) = %v, want ErrBadKey", bad, err)
		}
	}
}

// Online rotation: install the new key everywhere, use it, remove the old
// one. The pool stays together, and afterwards only the new key admits a
// member.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := []byte("0123456789abcdef"), []byte("fedcba9876543210abcdefgh")
	oldB64, newB64 := base64.StdEncoding.EncodeToString(oldKey), base64.StdEncoding.EncodeToString(newKey)
	start := func(name string, keys ...[]byte) *Pool {
		p, err := New(Config{NodeName: name, BindAddr: "127.0.0.1:0", Profile: ProfileLocal, Keyring: keys, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Shutdown() })
		return p
	}
	a, b, c := start("rot-a", oldKey), start("rot-b", oldKey), start("rot-c", oldKey)
	for _, p := range []*Pool{b, c} {
		if _, err := p.Join([]string{a.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	together := func() bool { return alive(a.Members()) == 3 && alive(b.Members()) == 3 && alive(c.Members()) == 3 }
	waitFor(t, 10*time.Second, "three members", together)

	if _, err := a.InstallKey("short"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("InstallKey(bad) = %v", err)
	}
	// After each step every member's own keyring shows it (see LocalKeys).
	step := func(name string, op func(string) (KeyringResponse, error), key string, want ...string) {
		t.Helper()
		if r, err := op(key); err != nil || r.Responses != 3 {
			t.Fatalf("%s: %+v %v", name, r, err)
		}
		for _, p := range []*Pool{a, b, c} {
			if got := p.LocalKeys(); !slices.Equal(got, want) {
				t.Fatalf("%s: member keys %v, want %v", name, got, want)
			}
		}
	}
	step("install", a.InstallKey, newB64, oldB64, newB64)
	step("use", b.UseKey, newB64, newB64, oldB64)
	step("remove", c.RemoveKey, oldB64, newB64)
	r, err := a.ListKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != 1 || r.Keys[newB64] != 3 || r.PrimaryKeys[newB64] != 3 {
		t.Fatalf("keys after rotation: %+v", r)
	}
	if _, err := start("rot-old", oldKey).Join([]string{a.Addr()}); err == nil {
		t.Fatal("a member with the removed key joined")
	}
	late := start("rot-new", newKey)
	if _, err := late.Join([]string{b.Addr()}); err != nil {
		t.Fatalf("a member with the new key: %v", err)
	}
	waitFor(t, 10*time.Second, "four members with the new key", func() bool {
		return alive(a.Members()) == 4 && alive(b.Members()) == 4 && alive(c.Members()) == 4 && alive(late.Members()) == 4
	})
}

func TestKeyringWithoutEncryption(t *testing.T) {
	t.Parallel()
	p := startNode(t, "plain-kr", "127.0.0.1:0", ProfileLocal, Tags{})
	k, _ := NewKey()
	if _, err := p.InstallKey(k); !errors.Is(err, ErrKeyringQuery) {
		t.Fatalf("install on an unencrypted pool: %v", err)
	}
}
