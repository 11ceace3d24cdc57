package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// sampleLogs are entries of every kind raft writes, with and without
// data, extensions and append times, one of them larger than bbolt's page.
func sampleLogs(first uint64) []*raft.Log {
	at := time.Date(2026, 12, 6, 17, 0, 0, 123456789, time.UTC)
	big := bytes.Repeat([]byte("agora"), 20_000)
	logs := []*raft.Log{
		{Type: raft.LogCommand, Term: 1, Data: []byte("cmd"), AppendedAt: at},
		{Type: raft.LogNoop, Term: 1},
		{Type: raft.LogConfiguration, Term: 2, Data: []byte{0, 1, 2, 255}, Extensions: []byte("ext")},
		{Type: raft.LogBarrier, Term: 3, AppendedAt: at.Add(time.Second)},
		{Type: raft.LogCommand, Term: 3, Data: big, AppendedAt: at.Add(2 * time.Second)},
		{Type: raft.LogCommand, Term: 4, Data: []byte{}, Extensions: []byte{}},
	}
	for i, l := range logs {
		l.Index = first + uint64(i)
	}
	return logs
}

func openBoth(t *testing.T) (*Store, *raftboltdb.BoltStore) {
	t.Helper()
	dir := t.TempDir()
	ours, err := Open(filepath.Join(dir, "ours.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ours.Close() })
	theirs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "theirs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = theirs.Close() })
	return ours, theirs
}

// sameLog compares what a store gives back with what was stored: an empty
// slice may come back nil, as from raft-boltdb, and times in UTC.
func sameLog(t *testing.T, got, want *raft.Log) {
	t.Helper()
	norm := func(l raft.Log) raft.Log {
		if len(l.Data) == 0 {
			l.Data = nil
		}
		if len(l.Extensions) == 0 {
			l.Extensions = nil
		}
		l.AppendedAt = l.AppendedAt.UTC()
		return l
	}
	if g, w := norm(*got), norm(*want); !reflect.DeepEqual(g, w) {
		t.Fatalf("entry %d: got %+v, want %+v", want.Index, g, w)
	}
}

// TestSameBytesAsRaftBoltDB stores the same entries here and with
// raft-boltdb and compares the files' raw keys and values.
func TestSameBytesAsRaftBoltDB(t *testing.T) {
	ours, theirs := openBoth(t)
	logs := sampleLogs(1)
	if err := ours.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := theirs.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2][]byte{{[]byte("CurrentTerm"), []byte{0, 0, 0, 0, 0, 0, 0, 4}}, {[]byte("LastVoteCand"), []byte("m1")}} {
		if err := ours.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
		if err := theirs.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	raw := func(path string) map[string]string {
		out := map[string]string{}
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					out[fmt.Sprintf("%s/%x", name, k)] = string(v)
					return nil
				})
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	oursPath, theirsPath := ours.Path(), filepath.Join(filepath.Dir(ours.Path()), "theirs.db")
	if err := ours.Close(); err != nil {
		t.Fatal(err)
	}
	if err := theirs.Close(); err != nil {
		t.Fatal(err)
	}
	a, b := raw(oursPath), raw(theirsPath)
	if len(a) != len(logs)+2 {
		t.Fatalf("%d keys written, want %d", len(a), len(logs)+2)
	}
	if !reflect.DeepEqual(a, b) {
		for k := range b {
			if a[k] != b[k] {
				t.Errorf("%s: ours %q, raft-boltdb %q", k, a[k], b[k])
			}
		}
		t.Fatal("the files differ")
	}
}

// TestReadsEachOthersFiles writes with one store and reads with the other,
// both ways: a data directory moves between agora versions unchanged.
func TestReadsEachOthersFiles(t *testing.T) {
	ours, theirs := openBoth(t)
	logs := sampleLogs(10)
	if err := ours.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := theirs.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	oursPath, theirsPath := ours.Path(), filepath.Join(filepath.Dir(ours.Path()), "theirs.db")
	_ = ours.Close()
	_ = theirs.Close()
	// Swap: raft-boltdb opens our file, we open its file.
	theirsReading, err := raftboltdb.New(raftboltdb.Options{Path: oursPath})
	if err != nil {
		t.Fatal(err)
	}
	defer theirsReading.Close()
	oursReading, err := Open(theirsPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer oursReading.Close()
	for _, want := range logs {
		for _, s := range []raft.LogStore{theirsReading, oursReading} {
			var got raft.Log
			if err := s.GetLog(want.Index, &got); err != nil {
				t.Fatalf("%T: entry %d: %v", s, want.Index, err)
			}
			sameLog(t, &got, want)
		}
	}
}

func TestLogStore(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "raft.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bounds := func(first, last uint64) {
		t.Helper()
		f, err := s.FirstIndex()
		if err != nil || f != first {
			t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
		}
		l, err := s.LastIndex()
		if err != nil || l != last {
			t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
		}
	}
	bounds(0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog of an empty store: %v, want raft.ErrLogNotFound", err)
	}
	logs := sampleLogs(5) // 5..10
	if err := s.StoreLog(logs[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs[1:]); err != nil {
		t.Fatal(err)
	}
	bounds(5, 10)
	for _, want := range logs {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		sameLog(t, &got, want)
	}
	// raft deletes a prefix after a snapshot and a suffix on a conflict.
	if err := s.DeleteRange(5, 6); err != nil {
		t.Fatal(err)
	}
	bounds(7, 10)
	if err := s.DeleteRange(9, 100); err != nil {
		t.Fatal(err)
	}
	bounds(7, 8)
	if err := s.GetLog(9, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog of a deleted entry: %v, want raft.ErrLogNotFound", err)
	}
	// An entry overwritten (a new leader's) reads back new.
	repl := &raft.Log{Index: 8, Term: 9, Type: raft.LogCommand, Data: []byte("new")}
	if err := s.StoreLogs([]*raft.Log{repl}); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := s.GetLog(8, &got); err != nil {
		t.Fatal(err)
	}
	sameLog(t, &got, repl)
}

func TestStableStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key: %v; raft expects the text \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("GetUint64 of a missing key: %v", err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("m2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What was set survives a reopen.
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 42 {
		t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
	}
	v, err := s.Get([]byte("LastVoteCand"))
	if err != nil || string(v) != "m2" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	v[0] = 'x' // a copy: changing it changes nothing stored
	if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "m2" {
		t.Fatalf("Get returned the store's memory: now %q", v)
	}
	if err := s.Set([]byte("short"), []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("short")); err == nil {
		t.Fatal("GetUint64 of a 1-byte value: no error")
	}
}

// BenchmarkStoreLogs stores batches of 16 entries of 30 kB, a follower's
// load at a million tasks, here and with raft-boltdb.
func BenchmarkStoreLogs(b *testing.B) {
	data := bytes.Repeat([]byte{7}, 30_000)
	batch := func(first uint64) []*raft.Log {
		logs := make([]*raft.Log, 16)
		for i := range logs {
			logs[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
		}
		return logs
	}
	for _, which := range []string{"raftlog", "raft-boltdb"} {
		b.Run(which, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "raft.db")
			var s raft.LogStore
			if which == "raftlog" {
				o, err := Open(path, &bbolt.Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				defer o.Close()
				o.db.NoSync = true // the encoding is measured, not the disk
				s = o
			} else {
				t, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				defer t.Close()
				s = t
			}
			b.ReportAllocs()
			next := uint64(1)
			for b.Loop() {
				if err := s.StoreLogs(batch(next)); err != nil {
					b.Fatal(err)
				}
				next += 16
			}
		})
	}
}

// TestGetLogCopies: an entry read stays valid after the file is closed
// (and its memory map gone): GetLog copies out of bbolt's pages.
func TestGetLogCopies(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "raft.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := sampleLogs(1)
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	got := make([]raft.Log, len(logs))
	for i, l := range logs {
		if err := s.GetLog(l.Index, &got[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range logs {
		sameLog(t, &got[i], logs[i])
	}
}
