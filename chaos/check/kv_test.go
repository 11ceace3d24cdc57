package check

import (
	"errors"
	"testing"
)

// kvStore is a fake key-value service: reads answer from m, or fail with
// err for the keys in down.
type kvStore struct {
	m    map[string]string
	down map[string]bool
}

func (s kvStore) read(key string) (string, bool, error) {
	if s.down[key] {
		return "", false, errors.New("connection refused")
	}
	v, ok := s.m[key]
	return v, ok, nil
}

func TestKVLost(t *testing.T) {
	acked := map[string]string{"w1": "s1-1", "w2": "s1-2", "w3": "s1-3"}
	// Unacknowledged writes that took effect anyway are no concern.
	clean := kvStore{m: map[string]string{"w1": "s1-1", "w2": "s1-2", "w3": "s1-3", "w4": "s1-4"}}
	if res := KVLost(acked, clean.read); len(res.Violations) != 0 || res.Acked != 3 || res.Read != 3 || res.Unread != 0 {
		t.Fatalf("false positive: %+v", res)
	}

	// Planted: the service dropped w2.
	dropped := kvStore{m: map[string]string{"w1": "s1-1", "w3": "s1-3"}}
	res := KVLost(acked, dropped.read)
	if len(res.Violations) != 1 || res.Violations[0].Checker != "kv-lost-write" {
		t.Fatalf("dropped key not caught: %+v", res)
	}

	// Planted: w3 holds a value nobody wrote to it.
	wrong := kvStore{m: map[string]string{"w1": "s1-1", "w2": "s1-2", "w3": "s1-2"}}
	if res := KVLost(acked, wrong.read); len(res.Violations) != 1 {
		t.Fatalf("wrong value not caught: %+v", res)
	}

	// A read that fails is unknown, not lost.
	down := kvStore{m: clean.m, down: map[string]bool{"w1": true}}
	res = KVLost(acked, down.read)
	if len(res.Violations) != 0 || res.Unread != 1 || res.Read != 2 || res.FirstErr == nil {
		t.Fatalf("failed read: %+v", res)
	}
}
