package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/agent/executor"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Persistent volumes live in DataDir/volumes/<role>/<id>. Beside each is a
// marker, <id>.created, holding the Raft index of the volume's CREATE: a
// directory whose marker does not match the assigned volume belongs to an
// earlier volume with that id and is emptied before use, and only
// directories with a marker are ever deleted (once the masters no longer
// assign the volume and no task here uses it).
const volumeMarkerSuffix = ".created"

// volumeUsageInterval is how often the agent measures the volumes of its
// running tasks; a task whose volume holds more than the volume's size is
// killed and reported FAILED.
var volumeUsageInterval = 10 * time.Second

func (a *Agent) volumesRoot() string { return filepath.Join(a.cfg.DataDir, "volumes") }

// volumeDir is where volume v keeps its data on this agent.
func (a *Agent) volumeDir(v *agorav1.Volume) (string, error) {
	id, role := v.GetId(), v.GetRole()
	for what, s := range map[string]string{"volume id": id, "role": role} {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") {
			return "", fmt.Errorf("bad %s %q", what, s)
		}
	}
	return filepath.Join(a.volumesRoot(), role, id), nil
}

// prepareVolume makes v's directory exist and belong to v: left from an
// earlier volume with the same id (another CREATE), it is emptied first.
func (a *Agent) prepareVolume(v *agorav1.Volume) (string, error) {
	dir, err := a.volumeDir(v)
	if err != nil {
		return "", err
	}
	marker := dir + volumeMarkerSuffix
	want := strconv.FormatUint(v.GetCreatedIndex(), 10)
	if got, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(got)) != want {
		a.log.Info("volume directory belongs to an earlier volume with this id; emptying it", "volume", v.GetId(), "created_index", want, "was", strings.TrimSpace(string(got)))
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("volume %s: empty old data: %w", v.GetId(), err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("volume %s: %w", v.GetId(), err)
	}
	if err := os.WriteFile(marker, []byte(want+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("volume %s: write marker: %w", v.GetId(), err)
	}
	return dir, nil
}

// runningVolumes returns the host directories of the volumes that running
// tasks use, by task.
func (a *Agent) runningVolumes() map[executor.TaskKey][]executor.Volume {
	out := map[executor.TaskKey][]executor.Volume{}
	for _, k := range a.exec.Running() {
		if spec, ok := a.exec.Spec(k); ok && len(spec.Volumes) > 0 {
			out[k] = spec.Volumes
		}
	}
	return out
}

// pruneVolumes deletes the data of volumes the masters no longer assign to
// this agent (destroyed, or the agent's record of them is gone) that no
// running task uses.
func (a *Agent) pruneVolumes(assigned []*agorav1.Volume) {
	keep := map[string]bool{}
	for _, v := range assigned {
		if dir, err := a.volumeDir(v); err == nil {
			keep[dir] = true
		}
	}
	for _, vols := range a.runningVolumes() {
		for _, v := range vols {
			keep[v.HostPath] = true
		}
	}
	markers, _ := filepath.Glob(filepath.Join(a.volumesRoot(), "*", "*"+volumeMarkerSuffix))
	for _, m := range markers {
		dir := strings.TrimSuffix(m, volumeMarkerSuffix)
		if keep[dir] {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn("cannot delete destroyed volume", "dir", dir, "err", err)
			continue
		}
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("cannot delete volume marker", "marker", m, "err", err)
		}
		a.log.Info("deleted the data of a volume no longer assigned to this agent", "dir", dir)
	}
}

// staleVolumeUsers returns the running tasks other than t that use one of
// t's volumes. The masters let one live task use a volume at a time, so
// such a task is stale: it was lost to the masters (partition, agent
// away) and is to be killed before t starts.
func (a *Agent) staleVolumeUsers(t *agorav1.Task) []executor.TaskKey {
	if len(t.GetVolumeIds()) == 0 {
		return nil
	}
	self := executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()}
	var out []executor.TaskKey
	for k, vols := range a.runningVolumes() {
		if k == self {
			continue
		}
		for _, v := range vols {
			if containsString(t.GetVolumeIds(), v.ID) {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// launchAfterStale kills the stale tasks on t's volumes and launches t
// once they ended (its launch is checkpointed at once, so a later
// reconcile does not launch it again).
func (a *Agent) launchAfterStale(t *agorav1.Task, volumes map[string]*agorav1.Volume, stale []executor.TaskKey) {
	key := taskKey(t.GetFrameworkId(), t.GetId())
	if err := a.launched.Add(key); err != nil {
		a.log.Error("cannot checkpoint launch; not launching", "task", t.GetId(), "err", err)
		return
	}
	ended := make([]<-chan struct{}, 0, len(stale))
	for _, k := range stale {
		a.log.Warn("killing stale task on a volume before launching its successor", "stale", k.String(), "task", t.GetId(), "volumes", t.GetVolumeIds())
		ended = append(ended, a.exec.Ended(k))
		a.mu.Lock()
		already := a.killing[k]
		a.killing[k] = true
		a.mu.Unlock()
		if !already {
			go a.killExec(k, 0)
		}
	}
	go func() {
		for _, c := range ended {
			select {
			case <-c:
			case <-a.ctx.Done():
				return
			}
		}
		a.start(t, volumes)
	}()
}

// volumeUsageLoop measures the volumes of running tasks every
// volumeUsageInterval until the agent stops.
func (a *Agent) volumeUsageLoop() {
	tick := time.NewTicker(volumeUsageInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
			a.checkVolumeUsage()
		}
	}
}

// checkVolumeUsage kills every running task whose volume holds more than
// its size; its KILLED update is reported as FAILED with the reason.
func (a *Agent) checkVolumeUsage() {
	for k, vols := range a.runningVolumes() {
		for _, v := range vols {
			limit := a.volumeLimit(v.HostPath)
			if limit <= 0 {
				continue
			}
			used, err := diskUsage(v.HostPath)
			if err != nil || used <= limit {
				continue
			}
			reason := fmt.Sprintf("volume %s over its size: %.1f MiB used of %.1f MiB", v.ID, float64(used)/(1<<20), float64(limit)/(1<<20))
			a.mu.Lock()
			if a.volumeFailed == nil {
				a.volumeFailed = map[executor.TaskKey]string{}
			}
			_, known := a.volumeFailed[k]
			a.volumeFailed[k] = reason
			already := a.killing[k]
			a.killing[k] = true
			a.mu.Unlock()
			if !known {
				a.log.Warn("killing task: "+reason, "task", k.TaskID, "framework", k.FrameworkID)
			}
			if !already {
				go a.killExec(k, 0)
			}
			break
		}
	}
}

// volumeLimit is the size in bytes of the volume kept at dir, as last
// assigned (0 when unknown).
func (a *Agent) volumeLimit(dir string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.volumeSizes[dir]
}

// rememberVolumeSizes records the assigned volumes' sizes by directory.
func (a *Agent) rememberVolumeSizes(vols []*agorav1.Volume) {
	sizes := make(map[string]int64, len(vols))
	for _, v := range vols {
		if dir, err := a.volumeDir(v); err == nil {
			sizes[dir] = int64(v.GetSizeMib() * (1 << 20))
		}
	}
	a.mu.Lock()
	a.volumeSizes = sizes
	a.mu.Unlock()
}

// volumeFailure turns the KILLED update of a task killed for an oversized
// volume into FAILED with the reason.
func (a *Agent) volumeFailure(st *agorav1.TaskStatus) {
	k := executor.TaskKey{FrameworkID: st.GetFrameworkId(), TaskID: st.GetTaskId()}
	a.mu.Lock()
	reason, ok := a.volumeFailed[k]
	if ok && st.GetState() == agorav1.TaskState_TASK_STATE_KILLED {
		delete(a.volumeFailed, k)
	}
	a.mu.Unlock()
	if ok && st.GetState() == agorav1.TaskState_TASK_STATE_KILLED {
		st.State = agorav1.TaskState_TASK_STATE_FAILED
		st.Reason = reason
	}
}

// diskUsage sums the allocated size of the files under dir (symlinks are
// not followed).
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return total, nil
}
