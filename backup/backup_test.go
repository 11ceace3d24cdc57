package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// writeFile writes a backup of body through Writer, as Save does.
func writeFile(t *testing.T, body []byte) (string, Header) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.snap")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	h, err := w.Commit(7, 3, uint64(len(body)), hex.EncodeToString(sum[:]), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	return path, h
}

func TestRoundTripAndRefusals(t *testing.T) {
	body := bytes.Repeat([]byte("agora"), 1000)
	path, h := writeFile(t, body)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(bytes.NewReader(good))
	if err != nil || got != h || got.Index != 7 || got.Term != 3 || got.AgoraVersion != "v1.2.3" || got.Size != uint64(len(body)) {
		t.Fatalf("verify: %+v, %v", got, err)
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotBackup},
		{"short header", good[:40], ErrCorrupt},
		{"truncated body", good[:len(good)-1], ErrCorrupt},
		{"longer body", append(bytes.Clone(good), 'x'), ErrCorrupt},
		{"flipped body byte", flip(good, len(good)-10), ErrCorrupt},
		{"flipped header byte", flip(good, 30), ErrCorrupt},
		{"other format", func() []byte { b := bytes.Clone(good); b[9] = 2; return b }(), ErrFormatVersion},
		{"other magic", flip(good, 0), ErrNotBackup},
	}
	for _, c := range cases {
		if _, err := Verify(bytes.NewReader(c.b)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x40
	return out
}

func TestCommitRefusesWhatTheLeaderDidNotSend(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.snap")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("partial body"))
	if _, err := w.Commit(1, 1, 12, hex.EncodeToString(sum[:]), "dev"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("commit of a short body: %v, want ErrCorrupt", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("refused commit left files: %v, %v", entries, err)
	}
}

// FuzzVerify: Verify never panics, and what it accepts re-encodes to the
// same header and carries a body of the size and checksum it claims.
func FuzzVerify(f *testing.F) {
	body := []byte("some snapshot body")
	h := Header{Format: FormatVersion, Index: 5, Term: 2, Size: uint64(len(body)), SHA256: sha256.Sum256(body), AgoraVersion: "dev"}
	hb, err := h.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(hb, body...))
	f.Add(hb)
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Verify(bytes.NewReader(b))
		if err != nil {
			return
		}
		enc, err := h.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b[:HeaderSize]) {
			t.Fatalf("accepted header does not re-encode: %v", err)
		}
		rest := b[HeaderSize:]
		if uint64(len(rest)) != h.Size || sha256.Sum256(rest) != h.SHA256 {
			t.Fatalf("accepted a body of %d bytes for size %d", len(rest), h.Size)
		}
	})
}

// BenchmarkVerify measures checking a backup of a 64 MiB body (header,
// size and SHA-256), what restore and inspect do before decoding.
func BenchmarkVerify(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<20)
	h := Header{Format: FormatVersion, Index: 1, Term: 1, Size: uint64(len(body)), SHA256: sha256.Sum256(body), AgoraVersion: "bench"}
	hb, err := h.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	file := append(hb, body...)
	b.SetBytes(int64(len(file)))
	b.ResetTimer()
	for range b.N {
		if _, err := Verify(bytes.NewReader(file)); err != nil {
			b.Fatal(err)
		}
	}
}
