package kvservice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
)

// A record on disk and on the wire (the replication stream uses the same
// framing as the log file):
//
//	length  uint32   length of payload
//	crc     uint32   CRC-32C of payload
//	payload:
//	  seq     uint64
//	  epoch   uint64
//	  kind    uint8    kindPut
//	  keyLen  uint32
//	  key     keyLen bytes
//	  value   the rest
const (
	recordHeaderSize  = 8
	payloadHeaderSize = 8 + 8 + 1 + 4
	maxPayloadSize    = payloadHeaderSize + MaxKeyBytes + MaxValueBytes

	kindPut byte = 1
)

// logFileName is the append-only log inside the data directory.
const logFileName = "kv.log"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// errShortRecord: the bytes end inside a record (a torn write, or a
	// stream cut short).
	errShortRecord = errors.New("kvservice: record cut short")
	// errBadRecord: a length out of range, a CRC mismatch or an unknown kind.
	errBadRecord = errors.New("kvservice: corrupt record")
)

// entry is one write in the log. Seq numbers are contiguous from 1; Epoch
// names the primary incarnation that created the entry (see doc.go, "Epochs").
type entry struct {
	Seq   uint64
	Epoch uint64
	Key   string
	Value []byte
}

func appendRecord(b []byte, e entry) []byte {
	n := payloadHeaderSize + len(e.Key) + len(e.Value)
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, 0) // crc, filled below
	b = binary.LittleEndian.AppendUint64(b, e.Seq)
	b = binary.LittleEndian.AppendUint64(b, e.Epoch)
	b = append(b, kindPut)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Key)))
	b = append(b, e.Key...)
	b = append(b, e.Value...)
	payload := b[start+recordHeaderSize:]
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// decodeRecord decodes the record at the start of b and returns it with the
// number of bytes it took. The entry's Value does not alias b.
func decodeRecord(b []byte) (entry, int, error) {
	if len(b) < recordHeaderSize {
		return entry{}, 0, errShortRecord
	}
	n := binary.LittleEndian.Uint32(b)
	if n < payloadHeaderSize || n > maxPayloadSize {
		return entry{}, 0, fmt.Errorf("%w: payload length %d", errBadRecord, n)
	}
	if uint64(len(b)-recordHeaderSize) < uint64(n) {
		return entry{}, 0, errShortRecord
	}
	payload := b[recordHeaderSize : recordHeaderSize+int(n)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return entry{}, 0, fmt.Errorf("%w: checksum mismatch", errBadRecord)
	}
	if payload[16] != kindPut {
		return entry{}, 0, fmt.Errorf("%w: kind %d", errBadRecord, payload[16])
	}
	keyLen := binary.LittleEndian.Uint32(payload[17:])
	if uint64(keyLen) > uint64(len(payload)-payloadHeaderSize) || keyLen > MaxKeyBytes {
		return entry{}, 0, fmt.Errorf("%w: key length %d", errBadRecord, keyLen)
	}
	rest := payload[payloadHeaderSize:]
	e := entry{
		Seq:   binary.LittleEndian.Uint64(payload),
		Epoch: binary.LittleEndian.Uint64(payload[8:]),
		Key:   string(rest[:keyLen]),
		Value: append([]byte{}, rest[keyLen:]...),
	}
	if len(e.Value) > MaxValueBytes {
		return entry{}, 0, fmt.Errorf("%w: value length %d", errBadRecord, len(e.Value))
	}
	return e, recordHeaderSize + int(n), nil
}

// decodeEntries decodes consecutive records that must continue a log whose
// last seq is after. It returns the entries and the length of the valid
// prefix of b; err says why decoding stopped early (nil when all of b was
// consumed). A record with a valid checksum but the wrong seq is an error
// of its own, never a torn tail.
func decodeEntries(b []byte, after uint64) ([]entry, int, error) {
	var out []entry
	off := 0
	for off < len(b) {
		e, n, err := decodeRecord(b[off:])
		if err != nil {
			return out, off, err
		}
		if want := after + uint64(len(out)) + 1; e.Seq != want {
			return out, off, fmt.Errorf("kvservice: record at offset %d has seq %d, want %d", off, e.Seq, want)
		}
		out = append(out, e)
		off += n
	}
	return out, off, nil
}

// logFile is the append-only log. Only one goroutine at a time may call its
// methods (the Server's appendMu).
type logFile struct {
	path string
	f    *os.File
	size int64
}

// openLog opens (creating if needed) the log in dir and returns its entries.
// A torn or corrupt tail is cut off and logged: only the last record can be
// torn by a crash, since every acknowledged record was fsynced before the
// next one was written.
func openLog(dir string, log *slog.Logger) (*logFile, []entry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("kvservice: data dir: %w", err)
	}
	path := filepath.Join(dir, logFileName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("kvservice: open log: %w", err)
	}
	if os.IsNotExist(statErr) {
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("kvservice: read log: %w", err)
	}
	entries, good, err := decodeEntries(data, 0)
	switch {
	case err == nil:
	case errors.Is(err, errShortRecord) || errors.Is(err, errBadRecord):
		log.Warn("log tail is torn or corrupt; cutting it off", "path", path,
			"offset", good, "dropped_bytes", len(data)-good, "reason", err.Error(), "kept_entries", len(entries))
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("kvservice: truncate torn log tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("kvservice: sync log: %w", err)
		}
	default:
		f.Close()
		return nil, nil, fmt.Errorf("kvservice: log %s: %w", path, err)
	}
	return &logFile{path: path, f: f, size: int64(good)}, entries, nil
}

// append writes es at the end of the log and fsyncs. On failure it cuts the
// file back to its previous size, so a failed append leaves no half record
// in front of the next one.
func (l *logFile) append(es []entry) error {
	var b []byte
	for _, e := range es {
		b = appendRecord(b, e)
	}
	_, err := l.f.WriteAt(b, l.size)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		if terr := l.f.Truncate(l.size); terr != nil {
			return fmt.Errorf("kvservice: append to log: %w (and truncating back failed: %v)", err, terr)
		}
		return fmt.Errorf("kvservice: append to log: %w", err)
	}
	l.size += int64(len(b))
	return nil
}

// reset empties the log.
func (l *logFile) reset() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("kvservice: reset log: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("kvservice: reset log: %w", err)
	}
	l.size = 0
	return nil
}

func (l *logFile) close() error { return l.f.Close() }

// syncDir makes a file creation or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("kvservice: sync data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("kvservice: sync data dir: %w", err)
	}
	return nil
}
