package fsm

import (
	"bytes"
	"strings"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Framework-scoped records: small values a framework keeps in the
// replicated state (the service scheduler keeps one State per service), so
// that a scheduler that restarts anywhere finds them again. Rules:
//
//   - only the owning framework writes: the command names the framework and
//     carries the digest of the writer's stream token, which must be the
//     framework's live one (PermissionDenied otherwise, like a call from a
//     replaced stream); a torn-down framework is FailedPrecondition.
//   - compare-and-set: expected_version 0 creates (FailedPrecondition if
//     the key exists), otherwise it must be the current version
//     (FailedPrecondition if not, NotFound if the key does not exist).
//     A record's version is the Raft index of the write that stored it.
//   - a value is at most MaxRecordBytes (ResourceExhausted), a key a
//     non-empty id of at most 256 bytes without NUL (InvalidArgument).
//   - tearing a framework down deletes its records.

// MaxRecordBytes bounds one framework record's value (1 MiB).
const MaxRecordBytes = 1 << 20

// recordWriter checks the writer of a record command.
func (x *txn) recordWriter(fid, token, key string) *Rejection {
	if rej := checkID("framework", fid); rej != nil {
		return rej
	}
	if rej := checkID("record key", key); rej != nil {
		return rej
	}
	f, ok := x.framework(fid)
	if !ok {
		return reject(CodeNotFound, "unknown framework %s", fid)
	}
	if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
		return reject(CodeFailedPrecondition, "framework %s was torn down", fid)
	}
	if token == "" || token != f.GetStreamToken() {
		return reject(CodePermissionDenied, "framework %s: the writer's stream is not the framework's live subscription", fid)
	}
	return nil
}

// putRecord stores a framework record with compare-and-set.
func (x *txn) putRecord(c *agorav1.PutRecordCommand) *Rejection {
	fid, key := c.GetFrameworkId(), c.GetKey()
	if rej := x.recordWriter(fid, c.GetStreamToken(), key); rej != nil {
		return rej
	}
	if n := len(c.GetValue()); n > MaxRecordBytes {
		return reject(CodeResourceExhausted, "record %s of framework %s: value of %d bytes exceeds the limit of %d", key, fid, n, MaxRecordBytes)
	}
	old, exists := tget[*agorav1.FrameworkRecord](x, tableKey(pRecord, fid, key))
	switch want := c.GetExpectedVersion(); {
	case want == 0 && exists:
		return reject(CodeFailedPrecondition, "record %s of framework %s exists at version %d; expected none", key, fid, old.GetVersion())
	case want != 0 && !exists:
		return reject(CodeNotFound, "record %s of framework %s does not exist; expected version %d", key, fid, want)
	case want != 0 && old.GetVersion() != want:
		return reject(CodeFailedPrecondition, "record %s of framework %s is at version %d; expected %d", key, fid, old.GetVersion(), want)
	}
	x.t.Insert(tableKey(pRecord, fid, key), &agorav1.FrameworkRecord{
		FrameworkId: fid, Key: key, Value: bytes.Clone(c.GetValue()), Version: x.index,
	})
	return nil
}

// deleteRecord removes a framework record (compare-and-set unless
// expected_version is 0).
func (x *txn) deleteRecord(c *agorav1.DeleteRecordCommand) *Rejection {
	fid, key := c.GetFrameworkId(), c.GetKey()
	if rej := x.recordWriter(fid, c.GetStreamToken(), key); rej != nil {
		return rej
	}
	old, exists := tget[*agorav1.FrameworkRecord](x, tableKey(pRecord, fid, key))
	if !exists {
		return reject(CodeNotFound, "record %s of framework %s does not exist", key, fid)
	}
	if want := c.GetExpectedVersion(); want != 0 && old.GetVersion() != want {
		return reject(CodeFailedPrecondition, "record %s of framework %s is at version %d; expected %d", key, fid, old.GetVersion(), want)
	}
	x.t.Delete(tableKey(pRecord, fid, key))
	return nil
}

// dropRecords deletes every record of framework fid.
func (x *txn) dropRecords(fid string) {
	for _, k := range x.keys(pRecord + fid + "\x00") {
		x.t.Delete(k)
	}
}

// Records returns framework fid's records whose key starts with prefix,
// sorted by key.
func (s *State) Records(fid, prefix string) []*agorav1.FrameworkRecord {
	var out []*agorav1.FrameworkRecord
	for _, r := range list[*agorav1.FrameworkRecord](s, pRecord+fid+"\x00") {
		if strings.HasPrefix(r.GetKey(), prefix) {
			out = append(out, r)
		}
	}
	return out
}

// Record returns one framework record.
func (s *State) Record(fid, key string) (*agorav1.FrameworkRecord, bool) {
	return get[*agorav1.FrameworkRecord](s, tableKey(pRecord, fid, key))
}
