package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Volume is a persistent volume a task uses: a directory on the agent
// (HostPath) that appears at ContainerPath inside the task's sandbox.
type Volume struct {
	// ID names the volume (for messages).
	ID string `json:"id"`
	// HostPath is the volume's directory, which must exist.
	HostPath string `json:"host_path"`
	// ContainerPath is where the task sees it, relative to the sandbox (a
	// leading "/" is dropped); it may not leave the sandbox.
	ContainerPath string `json:"container_path"`
}

// How a volume is attached to a sandbox.
const (
	AttachBindMount = "bind mount"
	AttachSymlink   = "symlink"
)

// attachMode is how attachVolume tries first: a bind mount where the agent
// may mount (root with CAP_SYS_ADMIN; a failed mount falls back), else a
// symlink. Tests set it to AttachSymlink to cover the fallback.
var attachMode = AttachBindMount

// target returns where v appears in sandbox, or an error if its container
// path is empty or leaves the sandbox.
func (v Volume) target(sandbox string) (string, error) {
	rel := filepath.Clean(strings.TrimLeft(v.ContainerPath, "/"))
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: volume %s: container path %q must name a directory inside the sandbox", ErrBadSpec, v.ID, v.ContainerPath)
	}
	return filepath.Join(sandbox, rel), nil
}

// attachVolumes makes every volume appear at its container path in the
// sandbox and returns a message saying how ("volume v1 at data (bind
// mount)").
func attachVolumes(sandbox string, vols []Volume) (string, error) {
	var msgs []string
	for _, v := range vols {
		how, err := attachVolume(sandbox, v)
		if err != nil {
			return "", err
		}
		msgs = append(msgs, fmt.Sprintf("volume %s at %s (%s)", v.ID, v.ContainerPath, how))
	}
	return strings.Join(msgs, "; "), nil
}

func attachVolume(sandbox string, v Volume) (string, error) {
	dst, err := v.target(sandbox)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("volume %s: %w", v.ID, err)
	}
	// A relaunch under the same sandbox finds the previous attachment.
	detachVolume(sandbox, v)
	if fi, err := os.Lstat(dst); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			if err := os.Remove(dst); err != nil {
				return "", fmt.Errorf("volume %s: replace old link: %w", v.ID, err)
			}
		} else if err := os.Remove(dst); err != nil {
			return "", fmt.Errorf("volume %s: container path %s is taken in the sandbox: %w", v.ID, v.ContainerPath, err)
		}
	}
	if attachMode == AttachBindMount {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return "", fmt.Errorf("volume %s: %w", v.ID, err)
		}
		if err := unix.Mount(v.HostPath, dst, "", unix.MS_BIND, ""); err == nil {
			return AttachBindMount, nil
		}
		_ = os.Remove(dst)
	}
	if err := os.Symlink(v.HostPath, dst); err != nil {
		return "", fmt.Errorf("volume %s: link %s: %w", v.ID, v.ContainerPath, err)
	}
	return AttachSymlink, nil
}

// detachVolumes undoes attachVolumes once a task ended: bind mounts are
// unmounted (so nothing that cleans the sandbox reaches the volume's
// data); symlinks stay, harmless.
func detachVolumes(sandbox string, vols []Volume) {
	for _, v := range vols {
		detachVolume(sandbox, v)
	}
}

func detachVolume(sandbox string, v Volume) {
	dst, err := v.target(sandbox)
	if err != nil {
		return
	}
	for {
		// Unmount until nothing is mounted there: any error (EINVAL, not
		// a mount point; ENOENT; EPERM) ends it.
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			return
		}
	}
}
