package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/serf/serf"
)

// ErrBadKey: a gossip key that is not base64 of 16, 24 or 32 bytes.
var ErrBadKey = errors.New("gossip: key must be base64 of 16, 24 or 32 bytes")

// ParseKey decodes a base64 gossip key and checks its length.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%w, got %d bytes", ErrBadKey, len(k))
}

// NewKey returns a new random 32-byte key in base64 (AES-256).
func NewKey() (string, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("gossip: new key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k[:]), nil
}

// KeyringResponse is what the pool's members answered a keyring query.
type KeyringResponse struct {
	// Members is how many live members were asked, Responses how many
	// answered and Errors how many of those failed.
	Members, Responses, Errors int
	// Messages holds failures by member name.
	Messages map[string]string
	// Keys counts how many members hold each key (base64), and
	// PrimaryKeys how many send with it; ListKeys only.
	Keys, PrimaryKeys map[string]int
}

// ErrKeyringQuery wraps a keyring query that some member did not carry
// out; the KeyringResponse returned with it says which.
var ErrKeyringQuery = errors.New("gossip: keyring query failed")

// InstallKey adds key (base64) to the keyring of every live member.
func (p *Pool) InstallKey(key string) (KeyringResponse, error) {
	return p.keyOp(key, p.serf.KeyManager().InstallKey)
}

// UseKey makes an installed key every member's primary (sending) key.
func (p *Pool) UseKey(key string) (KeyringResponse, error) {
	return p.keyOp(key, p.serf.KeyManager().UseKey)
}

// RemoveKey removes a key that is no member's primary from every keyring.
func (p *Pool) RemoveKey(key string) (KeyringResponse, error) {
	return p.keyOp(key, p.serf.KeyManager().RemoveKey)
}

// ListKeys asks every live member for its keys.
func (p *Pool) ListKeys() (KeyringResponse, error) {
	r, err := p.serf.KeyManager().ListKeys()
	return keyringResponse(r, err)
}

func (p *Pool) keyOp(key string, op func(string) (*serf.KeyResponse, error)) (KeyringResponse, error) {
	if _, err := ParseKey(key); err != nil {
		return KeyringResponse{}, err
	}
	return keyringResponse(op(strings.TrimSpace(key)))
}

func keyringResponse(r *serf.KeyResponse, err error) (KeyringResponse, error) {
	if r == nil {
		if err == nil {
			err = errors.New("no answer")
		}
		return KeyringResponse{}, fmt.Errorf("%w: %w", ErrKeyringQuery, err)
	}
	out := KeyringResponse{Members: r.NumNodes, Responses: r.NumResp, Errors: r.NumErr,
		Messages: r.Messages, Keys: r.Keys, PrimaryKeys: r.PrimaryKeys}
	if err != nil {
		return out, fmt.Errorf("%w: %w", ErrKeyringQuery, err)
	}
	return out, nil
}

// LocalKeys returns this member's own keys in base64, the primary first;
// nil without encryption.
//
// It also orders keyring changes for the race detector: memberlist reads
// its keyring without a lock when serf's keyring queries use or remove a
// key, so two queries handled one after the other on one member (each
// in its own goroutine, ordered only by network round trips) look like a
// race. LocalKeys takes the keyring's lock; calling it on every member
// between two changes, as the tests do when they check each member's
// keys, is the happens-before edge.
func (p *Pool) LocalKeys() []string {
	if p.keyring == nil {
		return nil
	}
	var out []string
	for _, k := range p.keyring.GetKeys() {
		out = append(out, base64.StdEncoding.EncodeToString(k))
	}
	return out
}
