package kvservice

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	es := []entry{
		{Seq: 1, Epoch: 7, Key: "a", Value: []byte("1")},
		{Seq: 2, Epoch: 7, Key: "b/c", Value: nil},
		{Seq: 3, Epoch: 9, Key: strings.Repeat("k", MaxKeyBytes), Value: bytes.Repeat([]byte{0}, MaxValueBytes)},
	}
	var b []byte
	for _, e := range es {
		b = appendRecord(b, e)
	}
	got, n, err := decodeEntries(b, 0)
	if err != nil || n != len(b) || len(got) != len(es) {
		t.Fatalf("decode: %d entries, %d of %d bytes, %v", len(got), n, len(b), err)
	}
	for i := range es {
		if got[i].Seq != es[i].Seq || got[i].Epoch != es[i].Epoch || got[i].Key != es[i].Key || !bytes.Equal(got[i].Value, es[i].Value) {
			t.Fatalf("entry %d: got %+v", i, got[i])
		}
	}
	// Every cut inside the last record is a short record, never an entry.
	last := len(b) - len(appendRecord(nil, es[2]))
	for _, cut := range []int{last + 1, last + recordHeaderSize, last + recordHeaderSize + 5, len(b) - 1} {
		got, n, err := decodeEntries(b[:cut], 0)
		if !errors.Is(err, errShortRecord) || len(got) != 2 || n != last {
			t.Fatalf("cut at %d: %d entries, good prefix %d, %v", cut, len(got), n, err)
		}
	}
	// A flipped bit is a corrupt record.
	bad := append([]byte{}, b...)
	bad[recordHeaderSize+3] ^= 1
	if _, _, err := decodeEntries(bad, 0); !errors.Is(err, errBadRecord) {
		t.Fatalf("flipped bit: %v", err)
	}
	// A good record out of sequence is neither torn nor accepted.
	if _, _, err := decodeEntries(b, 5); err == nil || errors.Is(err, errShortRecord) || errors.Is(err, errBadRecord) {
		t.Fatalf("out of sequence: %v", err)
	}
}

func TestTornRecordRecovery(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	lf, _, err := openLog(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := lf.append([]entry{{Seq: uint64(i), Epoch: 1, Key: fmt.Sprintf("k%d", i), Value: []byte("value")}}); err != nil {
			t.Fatal(err)
		}
	}
	lf.close()
	path := filepath.Join(dir, logFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the third record's write.
	if err := os.Truncate(path, fi.Size()-7); err != nil {
		t.Fatal(err)
	}

	// Served as a single pod, it keeps the first two writes and appends
	// after them.
	c := &cluster{t: t, pods: map[int]*pod{}, writeTimeout: 2 * time.Second, logs: &logs}
	p := c.addPod(0)
	p.dir = dir
	c.start(0, c.peers())
	c.waitReady()
	for _, k := range []string{"k1", "k2"} {
		waitValue(t, p.addr, k, "value")
	}
	if code, _, _ := get(p.addr, "k3"); code != 404 {
		t.Fatalf("torn k3: %d, want 404", code)
	}
	if !strings.Contains(logs.String(), "log tail is torn") {
		t.Fatalf("no WARN about the torn tail:\n%s", logs.String())
	}
	put(t, p.addr, "k4", "after")
	c.stopPod(0)

	lf, entries, err := openLog(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	lf.close()
	if len(entries) != 3 || entries[2].Key != "k4" || entries[2].Seq != 3 {
		t.Fatalf("log after recovery and a new write: %+v", entries)
	}
}

func TestLogRefusesOutOfSequenceRecord(t *testing.T) {
	dir := t.TempDir()
	b := appendRecord(nil, entry{Seq: 1, Key: "a"})
	b = appendRecord(b, entry{Seq: 3, Key: "b"})
	if err := os.WriteFile(filepath.Join(dir, logFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{DataDir: dir, Peers: Peers{0: "127.0.0.1:1"}}); err == nil || !strings.Contains(err.Error(), "want 2") {
		t.Fatalf("New on an out-of-sequence log: %v", err)
	}
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, entry{Seq: 1, Epoch: 2, Key: "k", Value: []byte("v")}), entry{Seq: 2, Key: "x"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, n, err := decodeEntries(b, 0)
		if n < 0 || n > len(b) || (err == nil && n != len(b)) {
			t.Fatalf("good prefix %d of %d, err %v", n, len(b), err)
		}
		// What decoded re-encodes to the same bytes.
		var re []byte
		for _, e := range es {
			if len(e.Key) > MaxKeyBytes || len(e.Value) > MaxValueBytes {
				t.Fatalf("entry over the limits: %d, %d", len(e.Key), len(e.Value))
			}
			re = appendRecord(re, e)
		}
		if !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs")
		}
	})
}
