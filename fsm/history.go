package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// The FSM remembers a little of what it removed, so that its verdicts on
// late calls are precise and the same on every replica (they live in the
// state and in snapshots, not in a leader's memory):
//
//   - removed offers: accepting or declining an offer that was accepted,
//     declined, rescinded or expired is FailedPrecondition with the reason,
//     not NotFound. The newest maxRemovedOffers are kept.
//   - superseded status uuids: acknowledging an update that a newer one of
//     the same task already replaced is a successful no-op, and an agent
//     resending an old update changes nothing. The newest
//     maxSupersededPerTask of each task are kept, until the task is removed.
const (
	maxRemovedOffers     = 1 << 14
	maxSupersededPerTask = 16
)

// Keys of the history tables (see state.go for the others).
const (
	hRemovedOffer = "ho\x00" // offer -> *removedOffer
	hRemovedSeq   = "hq\x00" // 8-byte seq \0 offer -> nil: eviction order
	hRemovedMeta  = "hm\x00" // -> *removedMeta
	hSuperseded   = "hs\x00" // framework \0 task \0 uuid -> *superseded
)

type removedOffer struct {
	seq    uint64
	reason string
}

type removedMeta struct {
	next  uint64 // seq of the next removal
	count int
}

// superseded records when (the log index) a status uuid was replaced.
type superseded struct{ index uint64 }

func removedSeqKey(seq uint64, id string) []byte {
	k := make([]byte, 0, len(hRemovedSeq)+9+len(id))
	k = append(k, hRemovedSeq...)
	k = binary.BigEndian.AppendUint64(k, seq)
	k = append(k, 0)
	return append(k, id...)
}

// rememberRemoved records why offer id was removed, forgetting the oldest
// record beyond maxRemovedOffers.
func (x *txn) rememberRemoved(id, reason string) {
	meta, _ := tget[*removedMeta](x, []byte(hRemovedMeta))
	m := removedMeta{}
	if meta != nil {
		m = *meta
	}
	if old, ok := tget[*removedOffer](x, tableKey(hRemovedOffer, id)); ok {
		x.t.Delete(removedSeqKey(old.seq, id))
		m.count--
	}
	x.t.Insert(tableKey(hRemovedOffer, id), &removedOffer{seq: m.next, reason: reason})
	x.t.Insert(removedSeqKey(m.next, id), nil)
	m.next++
	m.count++
	for m.count > maxRemovedOffers {
		k, _, ok := oldest(x, hRemovedSeq)
		if !ok {
			break
		}
		x.t.Delete(k)
		x.t.Delete(tableKey(hRemovedOffer, string(k[len(hRemovedSeq)+9:])))
		m.count--
	}
	x.t.Insert([]byte(hRemovedMeta), &m)
}

// oldest returns the first key under prefix.
func oldest(x *txn, prefix string) ([]byte, interface{}, bool) {
	var key []byte
	var val interface{}
	x.t.Root().WalkPrefix([]byte(prefix), func(k []byte, v interface{}) bool {
		key, val = k, v
		return true
	})
	return key, val, key != nil
}

// removedReason returns why offer id was removed, if it is remembered.
func (x *txn) removedReason(id string) (string, bool) {
	r, ok := tget[*removedOffer](x, tableKey(hRemovedOffer, id))
	if !ok {
		return "", false
	}
	return r.reason, true
}

// supersede records that t's latest status uuid was replaced, keeping the
// newest maxSupersededPerTask of the task.
func (x *txn) supersede(t *agorav1.Task) {
	u := t.GetStatus().GetUuid()
	if u == "" {
		return
	}
	prefix := tableKey(hSuperseded, t.GetFrameworkId(), t.GetId(), "")
	x.t.Insert(append(bytes.Clone(prefix), u...), &superseded{index: x.index})
	var keys [][]byte
	var at []uint64
	x.t.Root().WalkPrefix(prefix, func(k []byte, v interface{}) bool {
		keys = append(keys, k)
		at = append(at, v.(*superseded).index)
		return false
	})
	for len(keys) > maxSupersededPerTask {
		min := 0
		for i := range keys {
			if at[i] < at[min] || (at[i] == at[min] && bytes.Compare(keys[i], keys[min]) < 0) {
				min = i
			}
		}
		x.t.Delete(keys[min])
		keys = append(keys[:min], keys[min+1:]...)
		at = append(at[:min], at[min+1:]...)
	}
}

// wasSuperseded reports whether uuid was a status of task (fid, tid) that a
// newer one replaced.
func (x *txn) wasSuperseded(fid, tid, uuid string) bool {
	_, ok := x.t.Get(x.lookupKey(hSuperseded, fid, tid, uuid))
	return ok
}

// forgetSuperseded drops a removed task's superseded uuids.
func (x *txn) forgetSuperseded(fid, tid string) {
	for _, k := range x.keys(string(tableKey(hSuperseded, fid, tid, ""))) {
		x.t.Delete(k)
	}
}

// Snapshot records of the history tables; their bodies are not protos.
const (
	recRemovedOffer byte = 10 // uvarint seq | offer id \0 reason
	recSuperseded   byte = 11 // uvarint index | framework \0 task \0 uuid
)

// persistHistory writes the history tables with write.
func (s *State) persistHistory(write func(rec byte, body []byte) error) error {
	var err error
	var buf []byte
	root := s.root.Root()
	root.WalkPrefix([]byte(hRemovedSeq), func(k []byte, _ interface{}) bool {
		id := string(k[len(hRemovedSeq)+9:])
		r, ok := get[*removedOffer](s, tableKey(hRemovedOffer, id))
		if !ok {
			err = fmt.Errorf("removed offer %s has no record", id)
			return true
		}
		buf = binary.AppendUvarint(buf[:0], r.seq)
		buf = append(append(append(buf, id...), 0), r.reason...)
		err = write(recRemovedOffer, buf)
		return err != nil
	})
	if err != nil {
		return err
	}
	root.WalkPrefix([]byte(hSuperseded), func(k []byte, v interface{}) bool {
		buf = binary.AppendUvarint(buf[:0], v.(*superseded).index)
		buf = append(buf, k[len(hSuperseded):]...)
		err = write(recSuperseded, buf)
		return err != nil
	})
	return err
}

// restoreHistory inserts one history record; ok is false for other types.
func (x *txn) restoreHistory(rec byte, body []byte) (ok bool, err error) {
	if rec != recRemovedOffer && rec != recSuperseded {
		return false, nil
	}
	n, k := binary.Uvarint(body)
	if k <= 0 {
		return true, errors.New("history record: bad varint")
	}
	rest := body[k:]
	switch rec {
	case recRemovedOffer:
		id, reason, found := bytes.Cut(rest, []byte{0})
		if !found {
			return true, errors.New("removed offer record: no separator")
		}
		x.t.Insert(tableKey(hRemovedOffer, string(id)), &removedOffer{seq: n, reason: string(reason)})
		x.t.Insert(removedSeqKey(n, string(id)), nil)
		m := removedMeta{}
		if meta, ok := tget[*removedMeta](x, []byte(hRemovedMeta)); ok {
			m = *meta
		}
		m.count++
		m.next = max(m.next, n+1)
		x.t.Insert([]byte(hRemovedMeta), &m)
	case recSuperseded:
		if bytes.Count(rest, []byte{0}) != 2 {
			return true, errors.New("superseded status record: want framework, task and uuid")
		}
		x.t.Insert(append([]byte(hSuperseded), rest...), &superseded{index: n})
	}
	return true, nil
}
