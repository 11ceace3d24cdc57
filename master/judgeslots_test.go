package master

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestPrejudgeWaitsForASlot: with every judgement slot taken, a prejudge
// waits, and its context ending answers with the context's error (not a
// verdict); once a slot frees, the judgement runs and gives its verdict.
func TestPrejudgeWaitsForASlot(t *testing.T) {
	st := fsm.New(fsm.Config{}).State()
	bad := &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: ""}} // refused: no name
	for range cap(judgeSlots) {
		judgeSlots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, done, err := prejudge(ctx, st, fsm.CmdSetRole, bad, false)
	if !done || connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("prejudge with no slot free: done %v, err %v; want done and DeadlineExceeded", done, err)
	}
	freed := make(chan struct{})
	go func() {
		defer close(freed)
		<-judgeSlots // one slot frees while the next prejudge waits
	}()
	res, done, err := prejudge(context.Background(), st, fsm.CmdSetRole, bad, false)
	if !done || res.Err == nil || connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("prejudge once a slot freed: done %v, res %v, err %v; want the InvalidArgument verdict", done, res, err)
	}
	<-freed
	for range cap(judgeSlots) - 1 {
		<-judgeSlots
	}
	if len(judgeSlots) != 0 {
		t.Fatalf("%d slots still taken after the test released its own", len(judgeSlots))
	}
}
