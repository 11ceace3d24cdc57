// Package backup is the format of agora's backup files (`agora snapshot
// save`, `restore` and `inspect`) and the checks made before a file is
// restored.
//
// A backup file is a fixed 128-byte header followed by the body, the
// Raft snapshot of the FSM exactly as the leader's snapshot store holds
// it (fsm.State.Persist's records). The header, big-endian:
//
//	offset size
//	0      8    magic "AGORABAK"
//	8      2    format version (FormatVersion, 1)
//	10     2    zero
//	12     4    CRC-32 (IEEE) of bytes 16..127
//	16     8    Raft index of the snapshot
//	24     8    Raft term of the snapshot
//	32     8    body size in bytes
//	40     32   SHA-256 of the body
//	72     1    length of the agora version string (at most 55)
//	73     55   agora version of the master that took it, zero-padded
//
// ReadHeader refuses a file that is not a backup (ErrNotBackup), another
// format version (ErrFormatVersion) or a damaged header (ErrCorrupt);
// Verify also reads the body and refuses a truncated or longer one, or
// one whose checksum differs (ErrCorrupt). Writer writes a file under a
// temporary name and renames it into place only once it is complete.
// Inspect decodes a body into counts by kind without touching a cluster.
package backup
