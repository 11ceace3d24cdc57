package executor

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/atomicfile"
)

// checkpoint is the on-disk record of one task.
type checkpoint struct {
	Spec TaskSpec `json:"spec"`
	// Pid is the wrapper's pid, which is also the process group id.
	Pid  int `json:"pid"`
	Pgid int `json:"pgid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks since boot).
	StartTime  uint64    `json:"start_time"`
	LaunchedAt time.Time `json:"launched_at"`
	// KillRequested is set before Kill sends its first signal.
	KillRequested bool `json:"kill_requested,omitempty"`
	// Terminal is set with the final update, which is stored beside it.
	Terminal bool    `json:"terminal,omitempty"`
	Final    *Update `json:"final,omitempty"`
}

func saveCheckpoint(path string, c *checkpoint) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

func loadCheckpoint(path string) (*checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var c checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode checkpoint %s: %w", path, err)
	}
	return &c, nil
}

// procStat returns the start time (field 22) and state (field 3) of pid
// from /proc/<pid>/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself; the fields after the last ')' are plain.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: short", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return start, fields[0][0], nil
}

// processAlive reports whether pid is still the process that started at
// start and has not exited (a zombie has exited).
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, state, err := procStat(pid)
	if err != nil || got != start {
		return false
	}
	return state != 'Z' && state != 'X' && state != 'x'
}
