package chaos

import (
	"strings"
	"testing"

	"github.com/agora-sched/agora/service"
)

// The kv service's spec is one the service scheduler accepts, and the
// binary's path survives the shell.
func TestKVSpecParses(t *testing.T) {
	b, err := kvSpec("/tmp/it's here/agora")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := service.Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(spec.Pods) != 1 || spec.Pods[0].Count != kvPods || spec.Role != kvName {
		t.Fatalf("spec = %+v", spec)
	}
	if !strings.Contains(spec.Pods[0].Command, `exec '/tmp/it'\''s here/agora' kvservice`) {
		t.Fatalf("command %q does not quote the binary", spec.Pods[0].Command)
	}
}
