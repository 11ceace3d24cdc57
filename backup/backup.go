package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// Format constants.
const (
	// Magic opens every backup file.
	Magic = "AGORABAK"
	// FormatVersion is the only format version this build reads and
	// writes.
	FormatVersion = 1
	// HeaderSize is the length of the header before the body.
	HeaderSize = 128
	// MaxVersionLen bounds Header.AgoraVersion.
	MaxVersionLen = 55
)

// Errors of this package; every error ReadHeader and Verify return wraps
// one of them.
var (
	// ErrNotBackup: the file does not start with Magic.
	ErrNotBackup = errors.New("backup: not an agora backup file")
	// ErrFormatVersion: the file is of another format version.
	ErrFormatVersion = errors.New("backup: unsupported backup format version")
	// ErrCorrupt: the header or body is damaged, truncated or too long.
	ErrCorrupt = errors.New("backup: corrupt backup file")
)

// Header describes a backup's body.
type Header struct {
	Format       uint16
	Index, Term  uint64
	Size         uint64
	SHA256       [32]byte
	AgoraVersion string
}

// SumHex is the body's SHA-256 in hex.
func (h Header) SumHex() string { return hex.EncodeToString(h.SHA256[:]) }

// MarshalBinary encodes the header in its HeaderSize bytes.
func (h Header) MarshalBinary() ([]byte, error) {
	if len(h.AgoraVersion) > MaxVersionLen {
		return nil, fmt.Errorf("backup: agora version %q is longer than %d bytes", h.AgoraVersion, MaxVersionLen)
	}
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	binary.BigEndian.PutUint16(b[8:], h.Format)
	binary.BigEndian.PutUint64(b[16:], h.Index)
	binary.BigEndian.PutUint64(b[24:], h.Term)
	binary.BigEndian.PutUint64(b[32:], h.Size)
	copy(b[40:72], h.SHA256[:])
	b[72] = byte(len(h.AgoraVersion))
	copy(b[73:], h.AgoraVersion)
	binary.BigEndian.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:]))
	return b, nil
}

// ParseHeader decodes and checks a header.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return h, ErrNotBackup
	}
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header truncated at %d of %d bytes", ErrCorrupt, len(b), HeaderSize)
	}
	h.Format = binary.BigEndian.Uint16(b[8:])
	if h.Format != FormatVersion {
		return h, fmt.Errorf("%w: the file is format %d, this agora reads format %d", ErrFormatVersion, h.Format, FormatVersion)
	}
	if got, want := crc32.ChecksumIEEE(b[16:HeaderSize]), binary.BigEndian.Uint32(b[12:]); got != want || binary.BigEndian.Uint16(b[10:]) != 0 {
		return h, fmt.Errorf("%w: header checksum mismatch", ErrCorrupt)
	}
	h.Index = binary.BigEndian.Uint64(b[16:])
	h.Term = binary.BigEndian.Uint64(b[24:])
	h.Size = binary.BigEndian.Uint64(b[32:])
	copy(h.SHA256[:], b[40:72])
	n := int(b[72])
	if n > MaxVersionLen {
		return h, fmt.Errorf("%w: bad version length %d", ErrCorrupt, n)
	}
	h.AgoraVersion = string(b[73 : 73+n])
	for _, c := range b[73+n : HeaderSize] {
		if c != 0 {
			return h, fmt.Errorf("%w: bytes after the version string", ErrCorrupt)
		}
	}
	if h.Index == 0 || h.Term == 0 {
		return h, fmt.Errorf("%w: raft index %d, term %d", ErrCorrupt, h.Index, h.Term)
	}
	return h, nil
}

// ReadHeader reads and checks the header at the start of r.
func ReadHeader(r io.Reader) (Header, error) {
	b := make([]byte, HeaderSize)
	n, err := io.ReadFull(r, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Header{}, fmt.Errorf("backup: read header: %w", err)
	}
	return ParseHeader(b[:n])
}

// Verify reads a whole backup from r: the header, then exactly Size
// bytes of body whose SHA-256 must match, then the end of the input.
func Verify(r io.Reader) (Header, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return h, err
	}
	sum := sha256.New()
	n, err := io.Copy(sum, io.LimitReader(r, int64(h.Size)))
	if err != nil {
		return h, fmt.Errorf("backup: read body: %w", err)
	}
	if uint64(n) != h.Size {
		return h, fmt.Errorf("%w: truncated: body has %d of %d bytes", ErrCorrupt, n, h.Size)
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return h, fmt.Errorf("%w: bytes after the %d-byte body", ErrCorrupt, h.Size)
	}
	if !bytes.Equal(sum.Sum(nil), h.SHA256[:]) {
		return h, fmt.Errorf("%w: body checksum mismatch", ErrCorrupt)
	}
	return h, nil
}

// VerifyFile verifies the backup file f (see Verify) and returns its
// header and a reader of its body.
func VerifyFile(f *os.File) (Header, *io.SectionReader, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Header{}, nil, fmt.Errorf("backup: %w", err)
	}
	h, err := Verify(f)
	if err != nil {
		return h, nil, err
	}
	return h, io.NewSectionReader(f, HeaderSize, int64(h.Size)), nil
}

// Writer writes a backup file: the body through Write, then Commit with
// the snapshot's index, term and the checksum the leader computed.
type Writer struct {
	f    *os.File
	path string
	sum  hash.Hash
	n    uint64
	done bool
}

// Create starts a backup file at path; nothing appears at path until
// Commit.
func Create(path string) (*Writer, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	w := &Writer{f: f, path: path, sum: sha256.New()}
	if _, err := f.Write(make([]byte, HeaderSize)); err != nil {
		w.Abort()
		return nil, fmt.Errorf("backup: %w", err)
	}
	return w, nil
}

// Write appends body bytes.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.sum.Write(p[:n])
	w.n += uint64(n)
	return n, err
}

// Commit writes the header and moves the file into place. size and
// wantSHA are what the leader said it sent: a body of another size or
// checksum is refused (ErrCorrupt) and the file is removed.
func (w *Writer) Commit(index, term, size uint64, wantSHA, agoraVersion string) (Header, error) {
	defer w.Abort()
	h := Header{Format: FormatVersion, Index: index, Term: term, Size: w.n, AgoraVersion: agoraVersion}
	if len(h.AgoraVersion) > MaxVersionLen {
		h.AgoraVersion = h.AgoraVersion[:MaxVersionLen]
	}
	copy(h.SHA256[:], w.sum.Sum(nil))
	if w.n != size {
		return h, fmt.Errorf("%w: received %d of %d bytes", ErrCorrupt, w.n, size)
	}
	if h.SumHex() != wantSHA {
		return h, fmt.Errorf("%w: received body's checksum %s differs from the leader's %s", ErrCorrupt, h.SumHex(), wantSHA)
	}
	b, err := h.MarshalBinary()
	if err != nil {
		return h, err
	}
	if _, err := w.f.WriteAt(b, 0); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.path); err != nil {
		return h, fmt.Errorf("backup: %w", err)
	}
	w.done = true
	return h, nil
}

// Abort removes the unfinished file; after Commit it does nothing.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
}
