package fsm

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

func TestTmpStats(t *testing.T) {
	ok := map[CommandType]int{}
	bad := map[string]int{}
	tasks := 0
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		h.t = rt
		g := &gen{t: rt, now: 100}
		for range 80 {
			typ, m := g.command(h.f.State())
			res := h.apply(typ, m)
			if res.Err == nil {
				ok[typ]++
			} else {
				bad[typ.String()+" "+res.Err.Code.String()]++
			}
		}
		tasks += len(h.f.State().Tasks())
	})
	fmt.Println(ok, tasks)
	fmt.Println(bad)
}
