package executor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroups manages one cgroup v2 group per task under a parent group of
// our own.
type cgroups struct {
	parent string // absolute path of the group holding task groups
}

// detectCgroups returns a usable manager, or nil and why not.
func detectCgroups() (*cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not a cgroup2 mount (cgroups v1 or hybrid)", cgroupRoot)
	}
	self, err := ownCgroup()
	if err != nil {
		return nil, err
	}
	// cgroup v2 forbids processes in a group that delegates controllers to
	// children (except at the root), so task groups hang off a sibling of
	// our own group when we are not at the root.
	base := filepath.Join(cgroupRoot, self)
	if self != "/" {
		base = filepath.Dir(base)
	}
	if err := enableControllers(base); err != nil {
		return nil, err
	}
	parent := filepath.Join(base, "agora-tasks")
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", parent, err)
	}
	if err := enableControllers(parent); err != nil {
		return nil, err
	}
	c := &cgroups{parent: parent}
	// Prove we can make and configure a task group before relying on it.
	probe, err := c.create("probe", TaskSpec{CPUs: 1, MemMiB: 64})
	if err != nil {
		return nil, err
	}
	c.remove(probe)
	return c, nil
}

func ownCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

func enableControllers(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read controllers of %s: %w", dir, err)
	}
	have := strings.Fields(string(data))
	for _, want := range []string{"cpu", "memory"} {
		found := false
		for _, h := range have {
			found = found || h == want
		}
		if !found {
			return fmt.Errorf("controller %s not available in %s", want, dir)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
		return fmt.Errorf("enable cpu and memory in %s: %w", dir, err)
	}
	return nil
}

// create makes the group for a task and writes its limits.
func (c *cgroups) create(name string, spec TaskSpec) (string, error) {
	dir := filepath.Join(c.parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	cpu := "max 100000"
	if spec.CPUs > 0 {
		cpu = strconv.FormatInt(max(1000, int64(spec.CPUs*100000)), 10) + " 100000"
	}
	mem := "max"
	if spec.MemMiB > 0 {
		mem = strconv.FormatInt(spec.MemMiB<<20, 10)
	}
	for file, v := range map[string]string{"cpu.max": cpu, "memory.max": mem} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			c.remove(dir)
			return "", fmt.Errorf("write %s of %s: %w", file, dir, err)
		}
	}
	return dir, nil
}

// remove deletes a task group; it fails harmlessly while processes remain.
func (c *cgroups) remove(dir string) { _ = os.Remove(dir) }

// groupName is the cgroup directory name of a task.
func groupName(spec TaskSpec) string {
	return strings.ReplaceAll(spec.FrameworkID, ".", "_") + "." + spec.TaskID
}
