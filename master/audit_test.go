package master

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/auth"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

func TestAuditLogLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := openAuditLog(path, "m1", func() time.Time { return now }, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	a.record(auditEntry{Principal: "web", Via: "token", Procedure: agorav1connect.SchedulerServiceKillProcedure,
		IDs: keyIDs(&agorav1.KillRequest{Call: &agorav1.FrameworkCall{FrameworkId: "f1", StreamToken: "secret"}, TaskId: "t1", AgentId: "a1"})})
	a.record(auditEntry{Principal: "viewer", Procedure: agorav1connect.OperatorServiceSetRoleProcedure,
		Err: connect.NewError(connect.CodePermissionDenied, errors.New("no"))})
	// Flushed per line: readable before close.
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines before close, want 2", len(lines))
	}
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	a.record(auditEntry{Principal: "late"}) // after close: dropped, no panic
	lines = readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	first, second := lines[0], lines[1]
	ids, _ := first["ids"].(map[string]any)
	if first["principal"] != "web" || first["result"] != "ok" || first["master"] != "m1" || first["time"] != "2026-01-02T03:04:05Z" ||
		ids["task_id"] != "t1" || ids["call.framework_id"] != "f1" || ids["agent_id"] != "a1" {
		t.Fatalf("first line %v", first)
	}
	if _, leaked := ids["call.stream_token"]; leaked {
		t.Fatal("the stream secret is in the audit log")
	}
	if second["result"] != "permission_denied" || second["error"] == nil {
		t.Fatalf("second line %v", second)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode %v (%v), want 0600", fi.Mode(), err)
	}
	// A batch write names each item it carries (SetRoles: the roles).
	batch := keyIDs(&agorav1.SetRolesRequest{Roles: []*agorav1.Role{{Name: "web"}, {Name: "batch"}}})
	if batch["roles[0].name"] != "web" || batch["roles[1].name"] != "batch" {
		t.Fatalf("SetRoles ids %v, want both roles named", batch)
	}
	var nilLog *auditLog
	nilLog.record(auditEntry{}) // no audit log: nothing, no panic
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestOperatorNeeds(t *testing.T) {
	for proc, want := range map[string]string{
		agorav1connect.OperatorServiceListAgentsProcedure:       "",
		agorav1connect.OperatorServiceExplainFrameworkProcedure: "",
		agorav1connect.OperatorServiceGetServiceProcedure:       "",
		agorav1connect.OperatorServiceSetRoleProcedure:          auth.AreaRoles,
		agorav1connect.OperatorServiceRemovePeerProcedure:       auth.AreaRaft,
		agorav1connect.OperatorServiceGossipKeyringProcedure:    auth.AreaGossip,
		agorav1connect.OperatorServiceDrainAgentProcedure:       auth.AreaDrain,
		agorav1connect.OperatorServiceRunServiceProcedure:       auth.AreaServices,
		"/agora.v1.OperatorService/TakeSnapshot":                auth.AreaSnapshots,
		"/agora.v1.OperatorService/RestoreSnapshot":             auth.AreaSnapshots,
		"/agora.v1.OperatorService/SomethingNew":                "*",
	} {
		if got := operatorNeed(proc); got != want {
			t.Errorf("%s: need %q, want %q", proc, got, want)
		}
	}
	// Every operator procedure is placed: by the table or as a read.
	methods := agorav1.File_agora_v1_operator_proto.Services().ByName("OperatorService").Methods()
	for i := range methods.Len() {
		proc := "/" + agorav1connect.OperatorServiceName + "/" + string(methods.Get(i).Name())
		if operatorNeed(proc) == "*" {
			t.Errorf("%s is not placed in operatorNeeds", proc)
		}
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "": "", "Bearer": ""} {
		r := httptest.NewRequest("POST", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if got, _ := bearer(r); got != want {
			t.Errorf("%q: got %q, want %q", h, got, want)
		}
	}
}
