package service

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

const kvSpec = `{"name":"kv","role":"kv","pods":[{"name":"kv","count":3,
 "resources":{"cpus":1,"mem":256,"disk":1024,"ports":["http"]},
 "volume":{"size":512,"path":"data"},"command":"run v1",
 "env":{"KV_PEERS":"{{peers \"http\"}}"},
 "readiness":{"http":{"port":"http","path":"/ready"}},
 "placement":{"one_per":"agent"}}]}`

func opTypes(d Decision) []string {
	var out []string
	for _, op := range d.Operations {
		out = append(out, strings.TrimPrefix(op.GetType().String(), "OPERATION_TYPE_"))
	}
	return out
}

func launched(d Decision) *agorav1.TaskInfo {
	for _, op := range d.Operations {
		if op.GetType() == agorav1.OperationType_OPERATION_TYPE_LAUNCH {
			return op.GetTasks()[0]
		}
	}
	return nil
}

func specWith(t *testing.T, old, new string) *Spec {
	t.Helper()
	if !strings.Contains(kvSpec, old) {
		t.Fatalf("kvSpec has no %q", old)
	}
	s, err := Parse([]byte(strings.Replace(kvSpec, old, new, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeployOnePodAtATime(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	d := h.offer("a0")
	if got := opTypes(d); !slices.Equal(got, []string{"RESERVE", "CREATE", "LAUNCH"}) {
		t.Fatalf("first offer: ops %v, want RESERVE CREATE LAUNCH; reasons %v", got, d.Reasons)
	}
	labels := d.Operations[0].GetLabels()
	want := map[string]string{LabelService: "kv", LabelPod: "kv", LabelIndex: "0", LabelInstance: "kv-kv-0.r7-1", LabelPorts: "31000", LabelVolume: "kv-kv-0.r7-1"}
	if !maps.Equal(labels, want) {
		t.Errorf("labels = %v, want %v", labels, want)
	}
	ti := launched(d)
	if ti.GetVolumeIds()[0] != "kv-kv-0.r7-1" || ti.GetCommand().GetEnvironment()["KV_PEERS"] != "0=h0:31000" {
		t.Errorf("task = %v", ti)
	}
	if got := h.plan(); got != "IN_PROGRESS deploy kv-kv-0: waiting for readiness" {
		t.Errorf("plan = %q", got)
	}
	if d := h.offer("a1"); d.Accept() {
		t.Fatalf("pod 1 launched before pod 0 is ready: %v", opTypes(d))
	}
	h.status(h.task("kv-kv-0"), agorav1.TaskState_TASK_STATE_RUNNING)
	if d := h.offer("a1"); d.Accept() {
		t.Fatalf("pod 1 launched before pod 0 passed readiness")
	}
	if err := h.st.MarkReady(h.task("kv-kv-0")); err != nil {
		t.Fatal(err)
	}
	if d := h.offer("a0"); d.Accept() || !strings.Contains(strings.Join(d.Reasons, ";"), "agent a0 already holds kv-kv-0 (one_per agent)") {
		t.Fatalf("offer from a0 for pod 1: accept %v, reasons %v", d.Accept(), d.Reasons)
	}
	d = h.offer("a1")
	if launched(d).GetName() != "kv-kv-1" || launched(d).GetCommand().GetEnvironment()["KV_PEERS"] != "0=h0:31000,1=h1:31100" {
		t.Fatalf("pod 1: %v", launched(d))
	}
	h.settle()
	if got := h.plan(); got != "COMPLETE " {
		t.Fatalf("plan = %q", got)
	}
	st := h.st.Status()
	if len(st.Pods) != 3 {
		t.Fatalf("pods = %+v", st.Pods)
	}
	for i, p := range st.Pods {
		if p.State != "RUNNING" || !p.Ready || p.Index != i || p.AgentID == "" || p.VolumeID == "" || p.Address == "" {
			t.Errorf("pod %d = %+v", i, p)
		}
	}
	if h.st.WantsOffers() {
		t.Errorf("a complete plan wants offers")
	}
}

func TestRelaunchInPlace(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	p := *h.podOf("kv-kv-1")
	h.status(p.TaskID, agorav1.TaskState_TASK_STATE_FAILED)
	if got := h.plan(); got != "IN_PROGRESS recover kv-kv-1" {
		t.Errorf("plan = %q", got)
	}
	if !h.st.WantsOffers() {
		t.Errorf("a pod to recover does not want offers")
	}
	if d := h.offer("a3"); d.Accept() {
		t.Fatalf("pod 1 relaunched on another agent: %v", opTypes(d))
	}
	// An offer from its agent that lacks its reservation or volume is not used.
	o := h.c.offer(p.AgentID)
	o.Reservations = nil
	next := h.st.Clone()
	if d := next.HandleOffer(o); d.Accept() || !strings.Contains(strings.Join(d.Reasons, ";"), "does not carry its reservation") {
		t.Fatalf("offer without the reservation: accept %v reasons %v", d.Accept(), d.Reasons)
	}
	o = h.c.offer(p.AgentID)
	o.Volumes = nil
	if d := h.st.Clone().HandleOffer(o); d.Accept() || !strings.Contains(strings.Join(d.Reasons, ";"), "does not carry its volume") {
		t.Fatalf("offer without the volume: accept %v reasons %v", d.Accept(), d.Reasons)
	}
	d := h.offer(p.AgentID)
	if got := opTypes(d); !slices.Equal(got, []string{"LAUNCH"}) {
		t.Fatalf("relaunch ops = %v, reasons %v", got, d.Reasons)
	}
	q := h.podOf("kv-kv-1")
	if q.TaskID == p.TaskID || q.AgentID != p.AgentID || q.VolumeID != p.VolumeID || launched(d).GetVolumeIds()[0] != p.VolumeID {
		t.Fatalf("relaunch: before %+v after %+v", p, q)
	}
	h.settle()
	if got := h.plan(); got != "COMPLETE " {
		t.Fatalf("plan = %q", got)
	}
}

func TestScaleUpLeavesRunningPods(t *testing.T) {
	h := newHarness(t, kvSpec, 6, 1)
	h.settle()
	before := map[string][2]string{}
	for _, p := range h.st.Pods {
		before[h.st.podName(p)] = [2]string{p.TaskID, p.AgentID}
	}
	if err := h.st.Scale("", 5, false); err != nil {
		t.Fatal(err)
	}
	if ks := h.st.Kills(); len(ks) != 0 {
		t.Fatalf("scale up kills %v", ks)
	}
	if got := h.plan(); got != "IN_PROGRESS deploy kv-kv-3: waiting for an offer" {
		t.Errorf("plan = %q", got)
	}
	h.settle()
	for name, was := range before {
		p := h.podOf(name)
		if p.TaskID != was[0] || p.AgentID != was[1] {
			t.Errorf("%s changed: %v -> %s %s", name, was, p.TaskID, p.AgentID)
		}
	}
	if st := h.st.Status(); len(st.Pods) != 5 || st.Plan.State != PlanComplete {
		t.Fatalf("status = %+v", st)
	}
	// The new pods see every peer placed before them.
	if got := h.c.tasks[h.task("kv-kv-4")].env["KV_PEERS"]; strings.Count(got, "=") != 5 {
		t.Errorf("kv-kv-4 KV_PEERS = %q, want 5 peers", got)
	}
}

func TestScaleDownKeepsThenPurges(t *testing.T) {
	h := newHarness(t, kvSpec, 6, 1)
	if err := h.st.Scale("", 5, false); err != nil {
		t.Fatal(err)
	}
	h.settle()
	gone := map[string]Pod{"kv-kv-3": *h.podOf("kv-kv-3"), "kv-kv-4": *h.podOf("kv-kv-4")}
	if err := h.st.Scale("kv", 3, false); err != nil {
		t.Fatal(err)
	}
	ks := h.st.Kills()
	if len(ks) != 2 || ks[0].Pod != "kv-kv-3" || ks[1].Pod != "kv-kv-4" || ks[0].Reason != "scaled down" {
		t.Fatalf("kills = %+v", ks)
	}
	h.settle()
	if st := h.st.Status(); len(st.Pods) != 3 || st.Plan.State != PlanComplete {
		t.Fatalf("status = %+v", st)
	}
	if len(h.c.resv) != 5 || len(h.c.vols) != 5 || len(h.c.liveTasks()) != 3 {
		t.Fatalf("after scale down: %d reservations, %d volumes, %d tasks; want 5, 5, 3", len(h.c.resv), len(h.c.vols), len(h.c.liveTasks()))
	}
	// Scaling back up relaunches in place, on the kept volumes (the
	// cluster checks each pod's home).
	if err := h.st.Scale("", 5, false); err != nil {
		t.Fatal(err)
	}
	h.settle()
	for name, was := range gone {
		p := h.podOf(name)
		if p.AgentID != was.AgentID || p.VolumeID != was.VolumeID || !p.Ready {
			t.Errorf("%s came back as %+v, was %+v", name, p, was)
		}
	}
	if len(h.c.resv) != 5 {
		t.Fatalf("scale back up made new reservations: %d", len(h.c.resv))
	}
	if err := h.st.Scale("", 3, true); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if len(h.c.resv) != 3 || len(h.c.vols) != 3 || len(h.st.Pods) != 3 || len(h.st.Releases) != 0 {
		t.Fatalf("after purge: %d reservations, %d volumes, %d pods, %d releases", len(h.c.resv), len(h.c.vols), len(h.st.Pods), len(h.st.Releases))
	}
}

func TestReplace(t *testing.T) {
	h := newHarness(t, kvSpec, 5, 1)
	h.settle()
	old := *h.podOf("kv-kv-1")
	h.c.loseAgent(old.AgentID)
	h.status(old.TaskID, agorav1.TaskState_TASK_STATE_LOST)
	h.settle()
	if p := h.podOf("kv-kv-1"); p.AgentID != old.AgentID || p.live() {
		t.Fatalf("pod moved without replace: %+v", p)
	}
	if got := h.plan(); got != "IN_PROGRESS recover kv-kv-1" {
		t.Errorf("plan = %q", got)
	}
	if err := h.st.Replace("kv-kv-1"); err != nil {
		t.Fatal(err)
	}
	delete(h.c.home, "kv-kv-1")
	h.settle()
	p := h.podOf("kv-kv-1")
	if p.AgentID == old.AgentID || p.VolumeID == old.VolumeID || !p.Ready || h.plan() != "COMPLETE " {
		t.Fatalf("replaced pod %+v, plan %s", p, h.plan())
	}
	if len(h.st.Releases) != 1 || h.st.Releases[0].AgentID != old.AgentID {
		t.Fatalf("releases = %+v", h.st.Releases)
	}
	h.st.ForgetAgent(old.AgentID)
	h.c.forgetAgent(old.AgentID)
	if len(h.st.Releases) != 0 {
		t.Fatalf("releases after ForgetAgent = %+v", h.st.Releases)
	}
	// Forced replace of a pod on an active agent: the old task is killed
	// and the old reservation and volume are released from its agent.
	old = *h.podOf("kv-kv-2")
	if err := h.st.Replace("kv-kv-2"); err != nil {
		t.Fatal(err)
	}
	if ks := h.st.Kills(); len(ks) != 1 || ks[0].TaskID != old.TaskID {
		t.Fatalf("kills = %+v", ks)
	}
	delete(h.c.home, "kv-kv-2")
	h.settle()
	for _, r := range h.c.resv {
		if r.labels[LabelInstance] == old.Instance {
			t.Fatalf("old reservation %s not released", r.id)
		}
	}
	if h.c.vols[old.VolumeID] != nil || len(h.st.Releases) != 0 {
		t.Fatalf("old volume not destroyed; releases %+v", h.st.Releases)
	}
	if p := h.podOf("kv-kv-2"); p.AgentID == old.AgentID || !p.Ready {
		t.Fatalf("kv-kv-2 = %+v", p)
	}
}

func TestRollingUpdate(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	before := map[string]Pod{}
	for _, p := range h.st.Pods {
		before[h.st.podName(p)] = *p
	}
	if err := h.st.Update(specWith(t, `"run v1"`, `"run v2"`)); err != nil {
		t.Fatal(err)
	}
	ks := h.st.Kills()
	if len(ks) != 1 || ks[0].Pod != "kv-kv-0" || ks[0].Reason != "rolling update" {
		t.Fatalf("kills = %+v", ks)
	}
	if got := h.plan(); got != "IN_PROGRESS update kv-kv-0: stopping the old task" {
		t.Errorf("plan = %q", got)
	}
	h.settle()
	for name, was := range before {
		p := h.podOf(name)
		if p.TaskID == was.TaskID || p.AgentID != was.AgentID || p.VolumeID != was.VolumeID || p.Config.Command != "run v2" || !p.Ready {
			t.Errorf("%s: %+v, was %+v", name, p, was)
		}
	}
	if h.plan() != "COMPLETE " {
		t.Fatalf("plan = %s", h.plan())
	}
}

func TestUpdateFailureAndRollback(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	v1 := h.st.Spec.Clone()
	h.bad = "broken"
	before := map[string]string{}
	for _, p := range h.st.Pods {
		before[h.st.podName(p)] = p.TaskID
	}
	if err := h.st.Update(specWith(t, `"run v1"`, `"run broken"`)); err != nil {
		t.Fatal(err)
	}
	h.settle()
	st := h.st.Status()
	if st.Plan.State != PlanFailed || !strings.HasPrefix(st.Plan.Step, "update kv-kv-0 failed: task kv-kv-0.t7-") || !strings.HasSuffix(st.Plan.Step, " FAILED: test") {
		t.Fatalf("plan = %+v", st.Plan)
	}
	if st.Pods[0].State != "FAILED" || st.Pods[0].Ready {
		t.Errorf("pod 0 = %+v", st.Pods[0])
	}
	for _, name := range []string{"kv-kv-1", "kv-kv-2"} {
		if h.task(name) != before[name] || !h.podOf(name).Ready {
			t.Errorf("%s touched by a failed update", name)
		}
	}
	// A pod on the old config that dies is still recovered on it.
	h.status(h.task("kv-kv-2"), agorav1.TaskState_TASK_STATE_FAILED)
	h.settle()
	if p := h.podOf("kv-kv-2"); !p.Ready || p.Config.Command != "run v1" {
		t.Errorf("kv-kv-2 not recovered on v1: %+v", p)
	}
	before["kv-kv-2"] = h.task("kv-kv-2")
	// Roll back: the failed pod comes back on v1; the others are left alone.
	if err := h.st.Update(v1); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if h.plan() != "COMPLETE " {
		t.Fatalf("plan after roll back = %s", h.plan())
	}
	for _, name := range []string{"kv-kv-1", "kv-kv-2"} {
		if h.task(name) != before[name] {
			t.Errorf("%s restarted by the roll back", name)
		}
	}
	if p := h.podOf("kv-kv-0"); p.Config.Command != "run v1" || !p.Ready {
		t.Errorf("kv-kv-0 = %+v", p)
	}
}

func TestReadinessDeadline(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.offer("a0")
	tid := h.task("kv-kv-0")
	h.status(tid, agorav1.TaskState_TASK_STATE_RUNNING)
	if err := h.st.MarkNotReady(tid, "readiness check did not pass within 300s"); err != nil {
		t.Fatal(err)
	}
	if ks := h.st.Kills(); len(ks) != 1 || ks[0].Reason != "readiness check did not pass within 300s" {
		t.Fatalf("kills = %+v", ks)
	}
	h.kills()
	// A first deploy retries in place rather than failing the plan.
	if d := h.offer("a0"); !slices.Equal(opTypes(d), []string{"LAUNCH"}) {
		t.Fatalf("retry ops = %v %v", opTypes(d), d.Reasons)
	}
}

func TestRemoveAndRerunAdoptsReservations(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	before := map[string]Pod{}
	for _, p := range h.st.Pods {
		before[h.st.podName(p)] = *p
	}
	h.st.Remove(false)
	if h.st.Removed() {
		t.Fatal("removed before its tasks were killed")
	}
	h.settle()
	if !h.st.Removed() || len(h.c.liveTasks()) != 0 || len(h.c.resv) != 3 {
		t.Fatalf("remove: removed %v, tasks %v, %d reservations", h.st.Removed(), h.c.liveTasks(), len(h.c.resv))
	}
	// A new run of the same service finds its placements from the offers.
	h.st = New(h.st.Spec, "8")
	for _, id := range []string{"a0", "a1", "a2"} {
		for _, op := range h.offer(id).Operations {
			if op.GetType() == agorav1.OperationType_OPERATION_TYPE_RESERVE {
				t.Fatalf("re-run reserved again on %s", id)
			}
		}
	}
	h.settle()
	for name, was := range before {
		p := h.podOf(name)
		if p.AgentID != was.AgentID || p.VolumeID != was.VolumeID || !slices.Equal(p.Ports, was.Ports) || !p.Ready {
			t.Errorf("%s: %+v, was %+v", name, p, was)
		}
	}
	h.st.Remove(true)
	h.settle()
	if !h.st.Removed() || len(h.c.resv) != 0 || len(h.c.vols) != 0 {
		t.Fatalf("purge: removed %v, %d reservations, %d volumes", h.st.Removed(), len(h.c.resv), len(h.c.vols))
	}
}

// A lost accept reply: the accept did not apply, the State thinks it did.
func TestAcceptNotApplied(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	d := h.st.HandleOffer(h.c.offer("a0"))
	if !d.Accept() {
		t.Fatal("no accept")
	}
	tid := h.task("kv-kv-0")
	if err := h.st.HandleStatus(TaskStatus{TaskID: tid, State: agorav1.TaskState_TASK_STATE_UNKNOWN}); err != nil {
		t.Fatal(err)
	}
	if h.podOf("kv-kv-0").placed() {
		t.Fatal("pod still placed after UNKNOWN of an unconfirmed launch")
	}
	h.settle()
	if h.plan() != "COMPLETE " {
		t.Fatalf("plan = %s", h.plan())
	}
}

// The other way round: the accept applied, the State was not stored.
func TestAcceptAppliedStateLost(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	next := h.st.Clone()
	d := next.HandleOffer(h.c.offer("a0"))
	if err := h.c.apply("a0", d.Operations); err != nil {
		t.Fatal(err)
	}
	stray := launched(d).GetTaskId()
	// h.st is the old State: the next offer from a0 carries a reservation
	// it adopts; the stray task holds the resources, so no launch yet.
	if d := h.offer("a0"); d.Accept() {
		t.Fatalf("launched beside the stray task: %v", opTypes(d))
	}
	if p := h.podOf("kv-kv-0"); p.AgentID != "a0" || !p.Confirmed {
		t.Fatalf("not adopted: %+v", p)
	}
	// The driver kills the task it does not know.
	if err := h.st.HandleStatus(TaskStatus{TaskID: stray, State: agorav1.TaskState_TASK_STATE_RUNNING}); !errors.Is(err, ErrUnknownTask) {
		t.Fatalf("status of stray task: %v", err)
	}
	h.c.tasks[stray].state = agorav1.TaskState_TASK_STATE_KILLED
	h.settle()
	if h.plan() != "COMPLETE " || len(h.c.resv) != 3 {
		t.Fatalf("plan %s, %d reservations", h.plan(), len(h.c.resv))
	}
}

func TestPlacementByAttribute(t *testing.T) {
	h := newHarness(t, strings.Replace(kvSpec, `"one_per":"agent"`, `"one_per":"rack"`, 1), 6, 2)
	if err := h.st.Scale("", 2, false); err != nil {
		t.Fatal(err)
	}
	h.settle()
	racks := map[string]bool{}
	for _, p := range h.st.Pods {
		racks[p.Attributes["rack"]] = true
	}
	if len(racks) != 2 || h.plan() != "COMPLETE " {
		t.Fatalf("racks %v plan %s", racks, h.plan())
	}
	if err := h.st.Scale("", 3, false); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := h.plan(); got != "IN_PROGRESS deploy kv-kv-2: waiting for an offer" {
		t.Fatalf("a third pod on two racks: plan %s", got)
	}
}

func TestCommandErrorsChangeNothing(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	cases := []struct {
		name string
		do   func(*State) error
		want error
	}{
		{"scale negative", func(s *State) error { return s.Scale("", -1, false) }, ErrBadCommand},
		{"scale too many", func(s *State) error { return s.Scale("", MaxCount+1, false) }, ErrBadCommand},
		{"scale unknown type", func(s *State) error { return s.Scale("web", 2, false) }, ErrUnknownPod},
		{"replace unknown pod", func(s *State) error { return s.Replace("kv-kv-9") }, ErrUnknownPod},
		{"update renames", func(s *State) error { return s.Update(specWith(t, `"name":"kv","role"`, `"name":"kv2","role"`)) }, ErrBadCommand},
		{"update changes role", func(s *State) error { return s.Update(specWith(t, `"role":"kv"`, `"role":"other"`)) }, ErrBadCommand},
		{"update changes resources", func(s *State) error { return s.Update(specWith(t, `"cpus":1`, `"cpus":2`)) }, ErrBadCommand},
		{"update drops a type", func(s *State) error {
			return s.Update(specWith(t, `"name":"kv","count"`, `"name":"kw","count"`))
		}, ErrBadCommand},
		{"update invalid", func(s *State) error { return s.Update(&Spec{Name: "kv", Role: "kv"}) }, ErrInvalidSpec},
		{"ready unknown task", func(s *State) error { return s.MarkReady("nope") }, ErrUnknownTask},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := h.st.MarshalBinary()
			s := h.st.Clone()
			err := c.do(s)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			after, _ := s.MarshalBinary()
			if string(after) != string(before) {
				t.Errorf("a refused command changed the state")
			}
		})
	}
	// Two pod types: scale must name one.
	s := New(mustParse(t, `{"name":"x","role":"x","pods":[{"name":"a","count":1,"resources":{"cpus":1,"mem":1},"command":"x"},{"name":"b","count":1,"resources":{"cpus":1,"mem":1},"command":"x"}]}`), "")
	if err := s.Scale("", 2, false); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("scale without a type of two: %v", err)
	}
}

func mustParse(t *testing.T, spec string) *Spec {
	t.Helper()
	s, err := Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStatusJSONShape(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	h.settle()
	b, err := json.Marshal(h.st.Status())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
	if got := keys(m); !slices.Equal(got, []string{"name", "plan", "pods", "role"}) {
		t.Errorf("top keys %v", got)
	}
	pod := m["pods"].([]any)[0].(map[string]any)
	if got := keys(pod); !slices.Equal(got, []string{"address", "agent_id", "index", "name", "ready", "state", "task_id", "volume_id"}) {
		t.Errorf("pod keys %v", got)
	}
	if got := keys(m["plan"].(map[string]any)); !slices.Equal(got, []string{"state", "step"}) {
		t.Errorf("plan keys %v", got)
	}
	if pod["address"] != "h0:31000" || pod["index"].(float64) != 0 || pod["ready"] != true {
		t.Errorf("pod = %v", pod)
	}
}

// TestDemand: the plan demands the resources of a pod waiting for its
// first placement (a new pod), and nothing while a pod is relaunched in
// place (its reservation is its own) or while the plan is complete.
func TestDemand(t *testing.T) {
	h := newHarness(t, kvSpec, 4, 1)
	r, ok := h.st.Demand()
	if !ok || r.CPUs != 1 || r.Mem != 256 || r.Disk != 1024 {
		t.Fatalf("demand of a new service = %+v %v, want pod 0's resources", r, ok)
	}
	h.offer("a0")
	if r, ok := h.st.Demand(); ok {
		t.Fatalf("demand while pod 0 waits for readiness: %+v", r)
	}
	h.settle()
	if r, ok := h.st.Demand(); ok {
		t.Fatalf("demand of a complete plan: %+v", r)
	}
	p := *h.podOf("kv-kv-1")
	h.status(p.TaskID, agorav1.TaskState_TASK_STATE_FAILED)
	if r, ok := h.st.Demand(); ok {
		t.Fatalf("demand while a pod is relaunched in place: %+v", r)
	}
	h.settle()
	if err := h.st.Scale("", 4, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.st.Demand(); !ok {
		t.Fatal("no demand for the pod a scale adds")
	}
}
