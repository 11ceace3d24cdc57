package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"pgregory.net/rapid"
)

// TestPlanProperties runs random sequences of offers, task events, agent
// losses and commands against the naive cluster, which fails on any
// accept the master would refuse and on the invariants (harness.check and
// cluster.apply): never two pods of a type on one agent under one_per; a
// pod relaunched only on its own agent with its own volume; at most one pod
// in a plan step; a volume never held by two pods or used by two running
// tasks; the record round-trips. Scale up is checked to leave existing
// pods alone, and at the end every recoverable pod is recovered.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		agents := rapid.IntRange(2, 6).Draw(rt, "agents")
		count := rapid.IntRange(1, 4).Draw(rt, "count")
		placement := rapid.SampledFrom([]string{"agent", "rack", ""}).Draw(rt, "placement")
		spec := strings.Replace(kvSpec, `"count":3`, fmt.Sprintf(`"count":%d`, count), 1)
		if placement == "" {
			spec = strings.Replace(spec, `,
 "placement":{"one_per":"agent"}`, ``, 1)
		} else {
			spec = strings.Replace(spec, `"one_per":"agent"`, fmt.Sprintf(`"one_per":%q`, placement), 1)
		}
		sp, err := Parse([]byte(spec))
		if err != nil {
			rt.Fatalf("spec: %v\n%s", err, spec)
		}
		h := &harness{st: New(sp, "1"), c: newCluster(sp.Role, agents, 2), fail: rt.Fatalf, bad: "broken"}
		specs := map[string]*Spec{}
		for _, cmd := range []string{"run v1", "run v2", "run broken"} {
			s := sp.Clone()
			s.Pods[0].Command = cmd
			specs[cmd] = s
		}

		liveAgents := func() []string {
			var out []string
			for _, a := range h.c.agents {
				if !a.gone {
					out = append(out, a.id)
				}
			}
			return out
		}
		tasksIn := func(states ...agorav1.TaskState) []string {
			var out []string
			for _, id := range h.c.liveTasks() {
				if slices.Contains(states, h.c.tasks[id].state) {
					out = append(out, id)
				}
			}
			return out
		}

		rt.Repeat(map[string]func(*rapid.T){
			"offer": func(rt *rapid.T) {
				ids := liveAgents()
				if len(ids) == 0 {
					rt.Skip("no agents")
				}
				h.offer(rapid.SampledFrom(ids).Draw(rt, "agent"))
			},
			"start": func(rt *rapid.T) {
				ids := tasksIn(agorav1.TaskState_TASK_STATE_STAGING)
				if len(ids) == 0 {
					rt.Skip("nothing staging")
				}
				id := rapid.SampledFrom(ids).Draw(rt, "task")
				st := agorav1.TaskState_TASK_STATE_RUNNING
				if p, ok := h.st.podByTask(id); ok && p.Config != nil && strings.Contains(p.Config.Command, h.bad) {
					st = agorav1.TaskState_TASK_STATE_FAILED
				}
				h.status(id, st)
			},
			"ready": func(rt *rapid.T) {
				ids := tasksIn(agorav1.TaskState_TASK_STATE_RUNNING)
				if len(ids) == 0 {
					rt.Skip("nothing running")
				}
				id := rapid.SampledFrom(ids).Draw(rt, "task")
				if err := h.st.MarkReady(id); err != nil && !errors.Is(err, ErrUnknownTask) {
					rt.Fatalf("ready: %v", err)
				}
				h.check()
			},
			"notReady": func(rt *rapid.T) {
				ids := tasksIn(agorav1.TaskState_TASK_STATE_RUNNING)
				if len(ids) == 0 {
					rt.Skip("nothing running")
				}
				_ = h.st.MarkNotReady(rapid.SampledFrom(ids).Draw(rt, "task"), "deadline")
				h.check()
			},
			"die": func(rt *rapid.T) {
				ids := h.c.liveTasks()
				if len(ids) == 0 {
					rt.Skip("nothing live")
				}
				h.status(rapid.SampledFrom(ids).Draw(rt, "task"), rapid.SampledFrom([]agorav1.TaskState{
					agorav1.TaskState_TASK_STATE_FAILED, agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_KILLED,
				}).Draw(rt, "state"))
			},
			"kills": func(rt *rapid.T) { h.kills() },
			"staleStatus": func(rt *rapid.T) {
				// A late update of a task the State no longer tracks changes nothing.
				var old []string
				for id, t := range h.c.tasks {
					if _, ok := h.st.podByTask(id); !ok && !t.live() {
						old = append(old, id)
					}
				}
				if len(old) == 0 {
					rt.Skip("no old tasks")
				}
				slices.Sort(old)
				before, _ := h.st.MarshalBinary()
				err := h.st.HandleStatus(TaskStatus{TaskID: rapid.SampledFrom(old).Draw(rt, "task"), State: agorav1.TaskState_TASK_STATE_KILLED})
				after, _ := h.st.MarshalBinary()
				if !errors.Is(err, ErrUnknownTask) && string(before) != string(after) {
					// a release's task is known; anything else must be unknown
					if len(h.st.Releases) == 0 {
						rt.Fatalf("stale status: %v", err)
					}
				}
			},
			"scale": func(rt *rapid.T) {
				n := rapid.IntRange(0, 6).Draw(rt, "n")
				purge := rapid.Bool().Draw(rt, "purge")
				pt, _ := h.st.Spec.Pod("kv")
				old := pt.Count
				type pod struct{ task, agent string }
				before := map[string]pod{}
				for _, p := range h.st.Pods {
					if !h.st.retired(p) {
						before[h.st.podName(p)] = pod{p.TaskID, p.AgentID}
					}
				}
				killsBefore := map[string]bool{}
				for _, k := range h.st.Kills() {
					killsBefore[k.TaskID] = true
				}
				if err := h.st.Scale("", n, purge); err != nil {
					rt.Fatalf("scale %d: %v", n, err)
				}
				h.check()
				if n < old {
					return
				}
				for name, was := range before {
					p, ok := h.st.pod(name)
					if !ok || p.TaskID != was.task || p.AgentID != was.agent {
						rt.Fatalf("INVARIANT: scale %d -> %d changed %s: %+v -> %+v", old, n, name, was, p)
					}
				}
				for _, k := range h.st.Kills() {
					if !killsBefore[k.TaskID] && !strings.Contains(k.Reason, "scaled down") {
						rt.Fatalf("INVARIANT: scale up %d -> %d kills %+v", old, n, k)
					}
				}
			},
			"update": func(rt *rapid.T) {
				cmd := rapid.SampledFrom([]string{"run v1", "run v2", "run broken"}).Draw(rt, "command")
				next := specs[cmd].Clone()
				pt, _ := h.st.Spec.Pod("kv")
				next.Pods[0].Count = pt.Count
				if err := h.st.Update(next); err != nil && !h.st.Removing {
					rt.Fatalf("update: %v", err)
				}
				h.check()
			},
			"loseAgent": func(rt *rapid.T) {
				ids := liveAgents()
				if len(ids) <= 1 {
					rt.Skip("keep one agent")
				}
				for _, tid := range h.c.loseAgent(rapid.SampledFrom(ids).Draw(rt, "agent")) {
					h.status(tid, agorav1.TaskState_TASK_STATE_LOST)
				}
			},
			"forgetAgent": func(rt *rapid.T) {
				for _, a := range h.c.agents {
					if a.gone {
						h.st.ForgetAgent(a.id)
						h.c.forgetAgent(a.id)
					}
				}
				h.check()
			},
			"replace": func(rt *rapid.T) {
				var names []string
				for _, p := range h.st.Pods {
					if p.placed() && !h.st.retired(p) {
						names = append(names, h.st.podName(p))
					}
				}
				if len(names) == 0 {
					rt.Skip("nothing placed")
				}
				name := rapid.SampledFrom(names).Draw(rt, "pod")
				if err := h.st.Replace(name); err != nil {
					rt.Fatalf("replace %s: %v", name, err)
				}
				delete(h.c.home, name)
				h.check()
			},
			"restartScheduler": func(rt *rapid.T) {
				b, _ := h.st.MarshalBinary()
				var s State
				if err := s.UnmarshalBinary(b); err != nil {
					rt.Fatal(err)
				}
				h.st = &s
			},
		})

		// Liveness: with no more faults, every deployed pod whose agent
		// still offers is running again on its own reservation.
		h.bad = ""
		h.settle()
		for _, p := range h.st.Pods {
			if a := h.c.agent(p.AgentID); a != nil && !a.gone && h.st.recovering(p) {
				rt.Fatalf("%s not recovered on live agent %s: %+v, plan %s", h.st.podName(p), p.AgentID, p, h.plan())
			}
		}
	})
}
