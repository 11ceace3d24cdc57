package agent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

func TestDefaultResources(t *testing.T) {
	dir := t.TempDir()
	r, err := DefaultResources(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Scalar("cpus"), float64(runtime.NumCPU()); got != want {
		t.Errorf("cpus = %g, want %g", got, want)
	}
	kib, err := memTotalKiB("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	if got, max := r.Scalar("mem"), float64(kib)/1024; got <= 0 || got > 0.9*max+1 || got < 0.89*max {
		t.Errorf("mem = %g MiB, want about 90%% of %g MiB", got, max)
	}
	if r.Scalar("disk") <= 0 {
		t.Errorf("disk = %g, want the free space of %s", r.Scalar("disk"), dir)
	}
	if got := r.Ranges["ports"]; len(got) != 1 || got[0] != DefaultPorts {
		t.Errorf("ports = %v, want [%v]", got, DefaultPorts)
	}
	if _, err := DefaultResources(filepath.Join(dir, "missing")); err == nil {
		t.Error("DefaultResources of a missing dir: no error")
	}
}

func TestMemTotal(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text string
		want       int64
		ok         bool
	}{
		{"ok", "MemFree: 1 kB\nMemTotal:       16318480 kB\n", 16318480, true},
		{"missing", "MemFree: 1 kB\n", 0, false},
		{"garbage", "MemTotal: lots kB\n", 0, false},
		{"zero", "MemTotal: 0 kB\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := memTotalKiB(p)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("memTotalKiB = %d, %v; want %d, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseAttributes(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want map[string]string
		ok   bool
	}{
		{"", map[string]string{}, true},
		{"  ", map[string]string{}, true},
		{"rack:r1;zone:a", map[string]string{"rack": "r1", "zone": "a"}, true},
		{" rack : r1 ; zone:a; ", map[string]string{"rack": "r1", "zone": "a"}, true},
		{"os:linux:6.1", map[string]string{"os": "linux:6.1"}, true},
		{"topology.kubernetes.io/zone:eu-1", map[string]string{"topology.kubernetes.io/zone": "eu-1"}, true},
		{"rack", nil, false},
		{"rack:", nil, false},
		{":r1", nil, false},
		{"rack:r1;rack:r2", nil, false},
		{"bad key:x", nil, false},
		{"-rack:x", nil, false},
	} {
		got, err := ParseAttributes(tc.spec)
		if tc.ok != (err == nil) {
			t.Errorf("ParseAttributes(%q) error = %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrAttributes) {
				t.Errorf("ParseAttributes(%q) error %v does not wrap ErrAttributes", tc.spec, err)
			}
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseAttributes(%q) = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"a1": true, "agent-7.rack_2": true, "A": true,
		"": false, "-a": false, "a/b": false, "a b": false, string(make([]byte, 129)): false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}
