package devcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// PIDsWithEnv lists the processes whose environment holds kv
// ("KEY=VALUE"), such as every process of a task
// ("AGORA_TASK_ID=...") or of a framework ("AGORA_FRAMEWORK_ID=..."):
// agents leave task processes running when they stop, so tests and the
// demo find and end them this way. Linux only (it reads /proc).
func PIDsWithEnv(kv string) []int {
	return pidsWithEnv(func(v string) bool { return v == kv })
}

// KillTasksUnder SIGKILLs every process whose AGORA_SANDBOX lies below dir:
// task processes of a cluster's agents, which outlive an agent stopped
// for a restart by design, and must not outlive the cluster.
func KillTasksUnder(dir string) {
	prefix := "AGORA_SANDBOX=" + strings.TrimSuffix(dir, "/") + "/"
	for _, pid := range pidsWithEnv(func(v string) bool { return strings.HasPrefix(v, prefix) }) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func pidsWithEnv(match func(string) bool) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if match(string(v)) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// UnmountUnder detaches every mount below dir: the bind mounts of
// persistent volumes into task sandboxes (agents running as root attach
// volumes so), which the agent would detach when a task ends but cannot
// once it has been killed. Otherwise dir could not be removed.
func UnmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("devcluster: %w", err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeMountPath(f[4]); strings.HasPrefix(mp, dir+string(filepath.Separator)) {
			points = append(points, mp)
		}
	}
	// Deepest first.
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("devcluster: unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
