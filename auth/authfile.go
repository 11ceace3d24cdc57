package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Errors of this package.
var (
	// ErrBadFile: an auth or ACL file does not parse or breaks a rule.
	ErrBadFile = errors.New("auth: invalid file")
)

// HashToken returns the hex SHA-256 of a bearer token, as the auth file
// stores it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewToken returns a new random bearer token (256 bits, URL-safe base64
// with an "agora_" prefix so it is recognisable in a leak scan).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: random token: %w", err)
	}
	return "agora_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Entry is one principal of an auth file.
type Entry struct {
	// Name is the principal.
	Name string `json:"name"`
	// TokenSHA256 lists hex SHA-256 hashes of the principal's tokens.
	TokenSHA256 []string `json:"token_sha256,omitempty"`
	// CertNames lists client certificate common names that authenticate
	// as the principal.
	CertNames []string `json:"cert_names,omitempty"`
	// Agent, when set, binds the principal to that agent id.
	Agent string `json:"agent,omitempty"`
}

// AuthFile is the parsed form of an auth file.
type AuthFile struct {
	Principals []Entry `json:"principals"`
}

// Authenticator maps credentials to identities. Lookups are one map read;
// it is immutable and safe for concurrent use.
type Authenticator struct {
	tokens map[[sha256.Size]byte]Identity
	certs  map[string]Identity
}

// LoadAuthFile reads and parses an auth file.
func LoadAuthFile(path string) (*Authenticator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read auth file: %w", err)
	}
	a, err := ParseAuthFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseAuthFile parses an auth file (see the package documentation).
func ParseAuthFile(data []byte) (*Authenticator, error) {
	var f AuthFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: auth file: %w", ErrBadFile, err)
	}
	return NewAuthenticator(f)
}

// NewAuthenticator checks f and builds its lookup tables.
func NewAuthenticator(f AuthFile) (*Authenticator, error) {
	a := &Authenticator{tokens: map[[sha256.Size]byte]Identity{}, certs: map[string]Identity{}}
	names := map[string]bool{}
	for i, e := range f.Principals {
		if err := validName(e.Name); err != nil {
			return nil, fmt.Errorf("%w: principal %d: %w", ErrBadFile, i, err)
		}
		if names[e.Name] {
			return nil, fmt.Errorf("%w: principal %q listed twice", ErrBadFile, e.Name)
		}
		names[e.Name] = true
		if len(e.TokenSHA256) == 0 && len(e.CertNames) == 0 {
			return nil, fmt.Errorf("%w: principal %q has no token hash and no certificate name", ErrBadFile, e.Name)
		}
		if e.Agent != "" && strings.ContainsAny(e.Agent, " \t\n*") {
			return nil, fmt.Errorf("%w: principal %q: bad agent id %q", ErrBadFile, e.Name, e.Agent)
		}
		id := Identity{Principal: e.Name, Agent: e.Agent}
		for _, h := range e.TokenSHA256 {
			raw, err := hex.DecodeString(strings.ToLower(h))
			if err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("%w: principal %q: token_sha256 %q is not 64 hex digits", ErrBadFile, e.Name, h)
			}
			key := [sha256.Size]byte(raw)
			if _, dup := a.tokens[key]; dup {
				return nil, fmt.Errorf("%w: principal %q: a token hash is listed twice", ErrBadFile, e.Name)
			}
			tid := id
			tid.Via = "token"
			a.tokens[key] = tid
		}
		for _, cn := range e.CertNames {
			if cn == "" {
				return nil, fmt.Errorf("%w: principal %q: empty certificate name", ErrBadFile, e.Name)
			}
			if _, dup := a.certs[cn]; dup {
				return nil, fmt.Errorf("%w: certificate name %q is listed twice", ErrBadFile, cn)
			}
			cid := id
			cid.Via = "cert"
			a.certs[cn] = cid
		}
	}
	return a, nil
}

// Token returns the identity a bearer token authenticates; false when
// the token is unknown. The lookup is by the token's SHA-256, so its time
// does not depend on how much of a stored token a guess matches.
func (a *Authenticator) Token(token string) (Identity, bool) {
	if a == nil || token == "" {
		return Identity{}, false
	}
	id, ok := a.tokens[sha256.Sum256([]byte(token))]
	return id, ok
}

// Cert returns the identity of a client certificate's common name; false
// when the name is not listed.
func (a *Authenticator) Cert(commonName string) (Identity, bool) {
	if a == nil || commonName == "" {
		return Identity{}, false
	}
	id, ok := a.certs[commonName]
	return id, ok
}

// validName accepts principal names: 1-128 characters of letters, digits
// and . _ - : @.
func validName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("name must have 1 to 128 characters, got %d", len(s))
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:@", r)
		if !ok {
			return fmt.Errorf("name %q: character %q not allowed", s, r)
		}
	}
	return nil
}
