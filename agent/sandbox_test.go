package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
)

func TestSandboxTail(t *testing.T) {
	a, err := New(Config{ID: "a1", DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0",
		Resources: resources.MustParse("cpus:1;mem:64"), GossipProfile: gossip.ProfileLocal, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Kill)
	dir := a.exec.Sandbox("fw-1", "t1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := strings.Repeat("x", 20000) + "the end\n"
	if err := os.WriteFile(filepath.Join(dir, "stdout"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	h := a.httpHandler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, body := get("/sandbox/fw-1/t1/stdout?tail=12"); code != http.StatusOK || body != "xxxxthe end\n" {
		t.Errorf("tail=12: %d %q", code, body)
	}
	if code, body := get("/sandbox/fw-1/t1/stdout"); code != http.StatusOK || len(body) != 8<<10 || !strings.HasSuffix(body, "the end\n") {
		t.Errorf("default tail: %d, %d bytes", code, len(body))
	}
	if code, body := get("/sandbox/fw-1/t1/stdout?tail=999999"); code != http.StatusOK || body != out {
		t.Errorf("tail past the start: %d, %d bytes", code, len(body))
	}
	for path, want := range map[string]int{
		"/sandbox/fw-1/t1/stderr":                  http.StatusNotFound,
		"/sandbox/fw-1/t2/stdout":                  http.StatusNotFound,
		"/sandbox/fw-1/t1/environ":                 http.StatusBadRequest,
		"/sandbox/%2E%2E/t1/stdout":                http.StatusBadRequest,
		"/sandbox/fw-1/%2E%2E/stdout":              http.StatusBadRequest,
		"/sandbox/fw-1/t1/stdout?tail=0":           http.StatusBadRequest,
		"/sandbox/fw-1/t1/stdout?tail=x":           http.StatusBadRequest,
		"/sandbox/fw-1/t1/stdout?tail=99999999999": http.StatusBadRequest,
		"/sandbox/fw-1/t1%2Fx/stdout":              http.StatusBadRequest,
	} {
		if code, body := get(path); code != want {
			t.Errorf("GET %s: %d (%s), want %d", path, code, strings.TrimSpace(body), want)
		}
	}
}
