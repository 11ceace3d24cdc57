package check

import (
	"os"
	"testing"
)

func TestTmpUnacked(t *testing.T) {
	d := os.Getenv("DATA")
	if d == "" {
		t.Skip()
	}
	res, err := Replay(d, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Final
	fws := map[string]string{}
	for _, f := range st.Frameworks() {
		fws[f.GetId()] = f.String()[:200]
	}
	n := 0
	for _, tk := range st.Tasks() {
		if !tk.GetAcknowledged() && tk.GetStatus().GetUuid() != "" {
			n++
			if n < 6 {
				t.Logf("task %s fw %s state %v status %v", tk.GetId(), tk.GetFrameworkId(), tk.GetState(), tk.GetStatus())
			}
		}
	}
	t.Logf("unacked %d of %d; frameworks %v", n, len(st.Tasks()), fws)
}
