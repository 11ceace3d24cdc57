package fsm

import (
	"bytes"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func TestDryRunReportsRejectionAndChangesNothing(t *testing.T) {
	f := New(Config{})
	if _, err := f.ApplyMessage(1, CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 2}}); err != nil {
		t.Fatal(err)
	}
	st := f.State()
	var before bytes.Buffer
	if err := st.Persist(&before); err != nil {
		t.Fatal(err)
	}
	if rej := st.DryRun(CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "nope"}); rej == nil || rej.Code != CodeNotFound {
		t.Fatalf("dry run of deleting an unknown role: got %v, want NotFound", rej)
	}
	if rej := st.DryRun(CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "Bad Name"}}); rej == nil || rej.Code != CodeInvalidArgument {
		t.Fatalf("dry run of an invalid role: got %v, want InvalidArgument", rej)
	}
	if rej := st.DryRun(CmdDeleteRole, &agorav1.DeleteRoleCommand{Name: "web"}); rej != nil {
		t.Fatalf("dry run of a valid delete: %v", rej)
	}
	var after bytes.Buffer
	if err := f.State().Persist(&after); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Bytes(), after.Bytes()) || f.State().Index() != 1 {
		t.Fatal("dry run changed the state")
	}
	if _, ok := f.State().Role("web"); !ok {
		t.Fatal("role web vanished after a dry run of its deletion")
	}
}
