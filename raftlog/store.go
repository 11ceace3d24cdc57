package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

var (
	bucketLogs = []byte("logs")
	bucketConf = []byte("conf")
)

// ErrKeyNotFound is Get's error for a key never set. Its text is what
// hashicorp/raft compares with on a store without a term yet.
var ErrKeyNotFound = errors.New("not found")

// handle is raft-boltdb's codec configuration: the old time encoding, so
// files stay readable by the raft-boltdb and go-msgpack versions agora
// has shipped with. A handle is safe for concurrent use once configured.
var handle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.TimeNotBuiltin = true
	return h
}()

// logOverhead bounds the encoding of a raft.Log beside its Data and
// Extensions: the map header, six field names and the fixed-size values.
const logOverhead = 128

// Store is a raft.LogStore and raft.StableStore over one bbolt file.
type Store struct {
	db *bbolt.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens (or creates, mode 0600) the store at path. opts may be nil;
// its NoSync is ignored: every commit is fsynced.
func Open(path string, opts *bbolt.Options) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, fmt.Errorf("raftlog: open %s: %w", path, err)
	}
	db.NoSync = false
	s := &Store{db: db}
	if db.IsReadOnly() {
		return s, nil
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketLogs); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketConf)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raftlog: create buckets in %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// FirstIndex returns the first index in the log, 0 when it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edge(func(c *bbolt.Cursor) ([]byte, []byte) { return c.First() })
}

// LastIndex returns the last index in the log, 0 when it is empty.
func (s *Store) LastIndex() (uint64, error) {
	return s.edge(func(c *bbolt.Cursor) ([]byte, []byte) { return c.Last() })
}

func (s *Store) edge(move func(*bbolt.Cursor) ([]byte, []byte)) (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if k, _ := move(tx.Bucket(bucketLogs).Cursor()); k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("raftlog: read log bounds: %w", err)
	}
	return idx, nil
}

// GetLog reads the entry at idx into log; raft.ErrLogNotFound when there
// is none.
func (s *Store) GetLog(idx uint64, log *raft.Log) error {
	var key [8]byte
	binary.BigEndian.PutUint64(key[:], idx)
	return s.db.View(func(tx *bbolt.Tx) error {
		val := tx.Bucket(bucketLogs).Get(key[:])
		if val == nil {
			return raft.ErrLogNotFound
		}
		// The decoder copies Data and Extensions out of val, which is
		// bbolt's memory and only valid in this transaction.
		if err := codec.NewDecoderBytes(val, handle).Decode(log); err != nil {
			return fmt.Errorf("raftlog: decode entry %d: %w", idx, err)
		}
		return nil
	})
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one fsynced transaction.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	// Each value is encoded into a buffer of its final size (the codec
	// appends to the slice it is given), the keys into one array: bbolt
	// refers to both until Commit, which copies them into its pages.
	keys := make([]byte, 8*len(logs))
	var enc *codec.Encoder
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLogs)
		for i, l := range logs {
			key := keys[8*i : 8*i+8 : 8*i+8]
			binary.BigEndian.PutUint64(key, l.Index)
			val := make([]byte, 0, logOverhead+len(l.Data)+len(l.Extensions))
			if enc == nil {
				enc = codec.NewEncoderBytes(&val, handle)
			} else {
				enc.ResetBytes(&val)
			}
			if err := enc.Encode(l); err != nil {
				return fmt.Errorf("encode entry %d: %w", l.Index, err)
			}
			if err := b.Put(key, val); err != nil {
				return fmt.Errorf("put entry %d: %w", l.Index, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("raftlog: store %d entries: %w", len(logs), err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, inclusive.
func (s *Store) DeleteRange(min, max uint64) error {
	var from [8]byte
	binary.BigEndian.PutUint64(from[:], min)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketLogs).Cursor()
		for k, _ := c.Seek(from[:]); k != nil && binary.BigEndian.Uint64(k) <= max; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("raftlog: delete entries %d-%d: %w", min, max, err)
	}
	return nil
}

// Set stores a stable value.
func (s *Store) Set(k, v []byte) error {
	err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketConf).Put(k, v) })
	if err != nil {
		return fmt.Errorf("raftlog: set %q: %w", k, err)
	}
	return nil
}

// Get returns a copy of a stable value; ErrKeyNotFound (unwrapped, as raft
// compares its text) when it was never set.
func (s *Store) Get(k []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketConf).Get(k); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raftlog: get %q: %w", k, err)
	}
	if out == nil {
		return nil, ErrKeyNotFound
	}
	return out, nil
}

// SetUint64 stores a stable uint64 (big-endian).
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns a stable uint64; ErrKeyNotFound when never set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftlog: %q holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
