package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/agora-sched/agora/agent/executor"
)

// maxSandboxTail caps what one /sandbox request returns.
const maxSandboxTail = 1 << 20

// sandboxTail serves GET /sandbox/{framework}/{task}/{stream}?tail=N: the
// last N bytes (default 8 KiB, at most 1 MiB) of a task's stdout or
// stderr, for the masters' web UI. Ids that could leave the sandbox
// directory are refused (400); a task without such a file is 404.
func (a *Agent) sandboxTail(w http.ResponseWriter, r *http.Request) {
	if a.exec == nil {
		http.Error(w, "the agent's executor is not running", http.StatusServiceUnavailable)
		return
	}
	fid, tid, stream := r.PathValue("framework"), r.PathValue("task"), r.PathValue("stream")
	if stream != "stdout" && stream != "stderr" {
		http.Error(w, "stream must be stdout or stderr", http.StatusBadRequest)
		return
	}
	key := executor.TaskKey{FrameworkID: fid, TaskID: tid}
	if err := key.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tail := int64(8 << 10)
	if s := r.URL.Query().Get("tail"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > maxSandboxTail {
			http.Error(w, fmt.Sprintf("tail %q must be between 1 and %d", s, maxSandboxTail), http.StatusBadRequest)
			return
		}
		tail = n
	}
	f, err := os.Open(filepath.Join(a.exec.Sandbox(fid, tid), stream))
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "no "+stream+" for task "+tid+" of framework "+fid+" on agent "+a.cfg.ID, http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, "open "+stream+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "stat "+stream+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	off := max(0, st.Size()-tail)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Agora-Sandbox-Size", strconv.FormatInt(st.Size(), 10))
	_, _ = io.Copy(w, io.NewSectionReader(f, off, st.Size()-off))
}
