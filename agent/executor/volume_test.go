package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttachVolumes: a volume appears at its container path in the sandbox
// (bind mount where the process may mount, else a symlink), writes land in
// the volume's directory, and a container path may not leave the sandbox.
func TestAttachVolumes(t *testing.T) {
	for _, mode := range []string{AttachBindMount, AttachSymlink} {
		t.Run(mode, func(t *testing.T) {
			defer func(m string) { attachMode = m }(attachMode)
			attachMode = mode
			root := t.TempDir()
			host, sandbox := filepath.Join(root, "vol"), filepath.Join(root, "sandbox")
			for _, d := range []string{host, sandbox} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			vols := []Volume{{ID: "v1", HostPath: host, ContainerPath: "/var/data"}}
			msg, err := attachVolumes(sandbox, vols)
			if err != nil {
				t.Fatal(err)
			}
			defer detachVolumes(sandbox, vols)
			if !strings.HasPrefix(msg, "volume v1 at /var/data (") {
				t.Fatalf("message %q", msg)
			}
			if mode == AttachSymlink && !strings.Contains(msg, "(symlink)") {
				t.Fatalf("symlink mode says %q", msg)
			}
			t.Logf("attached: %s", msg)
			if err := os.WriteFile(filepath.Join(sandbox, "var", "data", "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(host, "f")); err != nil {
				t.Fatalf("write through the container path missed the volume: %v", err)
			}
			// Attaching again (a relaunch in the same sandbox) works.
			if _, err := attachVolumes(sandbox, vols); err != nil {
				t.Fatalf("re-attach: %v", err)
			}
			detachVolumes(sandbox, vols)
			if strings.Contains(msg, AttachBindMount) {
				if _, err := os.Stat(filepath.Join(sandbox, "var", "data", "f")); err == nil {
					t.Fatal("still mounted after detach")
				}
			}
			if _, err := os.Stat(filepath.Join(host, "f")); err != nil {
				t.Fatalf("detach lost the data: %v", err)
			}
		})
	}
	for _, bad := range []string{"", "/", "..", "../x", "a/../../x"} {
		if _, err := attachVolumes(t.TempDir(), []Volume{{ID: "v", HostPath: t.TempDir(), ContainerPath: bad}}); err == nil {
			t.Errorf("container path %q accepted", bad)
		}
	}
}
