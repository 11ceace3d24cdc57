package devcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// PIDsWithEnv lists the processes whose environment holds kv
// ("KEY=VALUE"), such as every process of a task
// ("AGORA_TASK_ID=...") or of a framework ("AGORA_FRAMEWORK_ID=..."):
// agents leave task processes running when they stop, so tests and the
// demo find and end them this way. Linux only (it reads /proc).
func PIDsWithEnv(kv string) []int {
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
			if string(v) == kv {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
