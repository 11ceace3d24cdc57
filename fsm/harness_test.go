package fsm

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// tb is what the harness needs of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// harness drives one FSM at consecutive indexes and checks, after every
// command, the invariants and (on rejection) that nothing changed.
type harness struct {
	t      tb
	f      *FSM
	index  uint64
	events []Event
	// unchanged is true when the last command was applied but changed
	// nothing (a no-op Judge reports as unchanged).
	unchanged bool
}

func newHarness(t tb) *harness {
	h := &harness{t: t}
	h.f = New(Config{OnApply: func(_ uint64, evs []Event) { h.events = append(h.events, evs...) }})
	return h
}

// body returns the snapshot bytes without the header (which holds the index).
func body(t tb, s *State) []byte {
	var b bytes.Buffer
	if err := s.Persist(&b); err != nil {
		t.Fatalf("persist: %v", err)
	}
	raw := b.Bytes()
	n, k := uvarint(raw)
	return raw[k+int(n):]
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func (h *harness) apply(typ CommandType, m proto.Message) Result {
	h.t.Helper()
	before := h.f.State()
	h.index++
	h.events = nil
	res, err := h.f.ApplyMessage(h.index, typ, m)
	if err != nil {
		h.t.Fatalf("encode: %v", err)
	}
	after := h.f.State()
	if after.Index() != h.index {
		h.t.Fatalf("index = %d, want %d", after.Index(), h.index)
	}
	if res.Err != nil {
		if !bytes.Equal(body(h.t, before), body(h.t, after)) {
			h.t.Fatalf("rejected %s changed state: %v", typ, res.Err)
		}
		if len(h.events) > 0 {
			h.t.Fatalf("rejected %s emitted events", typ)
		}
	}
	if err := after.CheckInvariants(); err != nil {
		h.t.Fatalf("after %s at index %d: %v", typ, h.index, err)
	}
	if missed := feedMissed(before, after); len(missed) > 0 {
		h.t.Fatalf("after %s at index %d: the assignment of %v changed but the change feed does not name them", typ, h.index, missed)
	}
	if missed := assignmentMissed(before, after); len(missed) > 0 {
		h.t.Fatalf("after %s at index %d: the live tasks of %v changed but not their AgentAssignmentVersion", typ, h.index, missed)
	}
	h.unchanged = res.Err == nil && before.root.Root() == after.root.Root()
	// Judge may dry-run the message itself (readOnlyApply). It is
	// compared with a clone of its own: proto.Clone drops a float field
	// holding -0 (found by FuzzApply), which the command itself keeps.
	judged, want := proto.Clone(m), proto.Clone(m)
	changed, rej := before.Judge(typ, judged)
	if !proto.Equal(judged, want) {
		h.t.Fatalf("%s: Judge modified the command it judged", typ)
	}
	if (rej == nil) != (res.Err == nil) || (rej == nil && changed == h.unchanged) {
		h.t.Fatalf("%s: Judge said changed=%v rejection=%v, Apply said unchanged=%v rejection=%v", typ, changed, rej, h.unchanged, res.Err)
	}
	return res
}

var macroRE = regexp.MustCompile(`@(\w+)(?:\[([^\]]*)\])?\(([^)]*)\)`)

// expand turns @field[role](spec) into repeated prototext resources.
func expand(t tb, in string) string {
	return macroRE.ReplaceAllStringFunc(in, func(m string) string {
		g := macroRE.FindStringSubmatch(m)
		r, err := resources.Parse(g[3])
		if err != nil {
			t.Fatalf("macro %s: %v", m, err)
		}
		var parts []string
		for _, res := range resourcepb.ToProto(g[2], r) {
			parts = append(parts, g[1]+": {"+prototext.MarshalOptions{}.Format(res)+"}")
		}
		return strings.Join(parts, " ")
	})
}

func commandByName(name string) (CommandType, bool) {
	for t, c := range commandTable {
		if c.new != nil && c.name == name {
			return CommandType(t), true
		}
	}
	return 0, false
}

func short(e fmt.Stringer, prefix string) string {
	return strings.TrimPrefix(e.String(), prefix)
}

func tsStr(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	if t.GetNanos() == 0 {
		return fmt.Sprint(t.GetSeconds())
	}
	return fmt.Sprintf("%d.%09d", t.GetSeconds(), t.GetNanos())
}

func resStr(rs []*agorav1.Resource) string {
	p, err := resourcepb.FromProto(rs)
	if err != nil {
		return "INVALID(" + err.Error() + ")"
	}
	out := p.String()
	for _, r := range resourcepb.IdleVolumes(rs) {
		out += fmt.Sprintf(" volume[%s](%s %g %s)", r.GetRole(), r.GetVolume().GetId(), r.GetScalar(), r.GetVolume().GetContainerPath())
	}
	return out
}

func formatResult(res Result, events []Event, unchanged bool) string {
	var b strings.Builder
	if res.Err != nil {
		fmt.Fprintf(&b, "rejected %s: %s\n", res.Err.Code, res.Err.Message)
		return b.String()
	}
	b.WriteString("ok")
	if unchanged {
		b.WriteString(" (no change)")
	}
	if len(res.IDs) > 0 {
		fmt.Fprintf(&b, " ids=%s", strings.Join(res.IDs, ","))
	}
	b.WriteString("\n")
	for i, rej := range res.Items {
		if rej == nil {
			fmt.Fprintf(&b, "item %d: ok\n", i)
			continue
		}
		fmt.Fprintf(&b, "item %d: rejected %s: %s\n", i, rej.Code, rej.Message)
	}
	for _, e := range events {
		b.WriteString(formatEvent(e))
		b.WriteString("\n")
	}
	return b.String()
}

func formatEvent(e Event) string {
	switch e.Kind {
	case EventOffersCreated:
		var ids []string
		for _, o := range e.Offers {
			ids = append(ids, o.GetId())
		}
		return fmt.Sprintf("event offers-created fw=%s offers=%s", e.FrameworkID, strings.Join(ids, ","))
	case EventOfferRemoved:
		return fmt.Sprintf("event offer-removed fw=%s offer=%s reason=%q rescind=%v", e.FrameworkID, e.OfferID, e.Reason, e.Rescind)
	case EventTaskStatus:
		s := e.Status
		return fmt.Sprintf("event task-status fw=%s task=%s agent=%s %s source=%s reason=%q uuid=%s", e.FrameworkID, s.GetTaskId(), s.GetAgentId(),
			short(s.GetState(), "TASK_STATE_"), short(s.GetSource(), "STATUS_SOURCE_"), s.GetReason(), s.GetUuid())
	case EventAgentLost:
		return fmt.Sprintf("event agent-lost fw=%s agent=%s reason=%q", e.FrameworkID, e.AgentID, e.Reason)
	case EventFrameworkTornDown:
		return fmt.Sprintf("event torn-down fw=%s reason=%q", e.FrameworkID, e.Reason)
	case EventInverseOffer:
		io := e.InverseOffer
		return fmt.Sprintf("event inverse-offer fw=%s agent=%s host=%s res=[%s] deadline=%s", e.FrameworkID, io.GetAgentId(), io.GetHostname(), resStr(io.GetResources()), tsStr(io.GetDeadline()))
	}
	return fmt.Sprintf("event %d", e.Kind)
}

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// dump prints the tables named in which (all when empty), one line a record.
func dump(s *State, which ...string) string {
	want := func(n string) bool { return len(which) == 0 || slices.Contains(which, n) }
	var b strings.Builder
	if want("masters") {
		for _, m := range s.Masters() {
			fmt.Fprintf(&b, "master %s raft=%s http=%s suffrage=%s\n", m.GetId(), m.GetRaftAddress(), m.GetHttpAddress(), m.GetSuffrage())
		}
	}
	if want("roles") {
		for _, r := range s.Roles() {
			fmt.Fprintf(&b, "role %s weight=%g priority=%d guarantee=%s limit=%s max-util=%g\n", r.GetName(), r.GetWeight(), r.GetPriority(),
				resStr(r.GetGuarantee()), resStr(r.GetLimit()), r.GetMaxUtilization())
		}
	}
	if want("agents") {
		for _, a := range s.Agents() {
			u := s.AgentUsage(a.GetId())
			fmt.Fprintf(&b, "agent %s %s addr=%s since=%s total=%s\n", a.GetId(), short(a.GetState(), "AGENT_STATE_"), a.GetAddress(), tsStr(a.GetStateSince()), u.Total)
			fmt.Fprintf(&b, "  reserved=[%s] used=[%s] offered=[%s] free=[%s]\n", u.Reserved, u.Used, u.Offered, u.Free)
			if d := a.GetDrain(); d != nil {
				var answers []string
				for _, ans := range d.GetAnswers() {
					verb := "declined"
					if ans.GetAccepted() {
						verb = "accepted"
					}
					answers = append(answers, ans.GetFrameworkId()+":"+verb+"@"+tsStr(ans.GetAnsweredAt()))
				}
				fmt.Fprintf(&b, "  drain started=%s deadline=%s passed=%v answers=%v\n", tsStr(d.GetStartedAt()), tsStr(d.GetDeadline()), d.GetDeadlinePassed(), answers)
			}
		}
	}
	if want("frameworks") {
		for _, f := range s.Frameworks() {
			var filters []string
			for _, fl := range f.GetFilters() {
				filters = append(filters, fl.GetAgentId()+"<"+tsStr(fl.GetUntil()))
			}
			fmt.Fprintf(&b, "framework %s %s name=%s principal=%s roles=%v suppressed=%v filters=%v token=%s disconnected=%s failover=%g\n",
				f.GetId(), short(f.GetState(), "FRAMEWORK_STATE_"), f.GetInfo().GetName(), f.GetInfo().GetPrincipal(), f.GetInfo().GetRoles(),
				f.GetSuppressedRoles(), filters, f.GetStreamToken(), tsStr(f.GetDisconnectedAt()), f.GetInfo().GetFailoverTimeoutSeconds())
			for _, d := range f.GetDemand() {
				fmt.Fprintf(&b, "  demand role=%s shape=[%s] count=%d\n", d.GetRole(), resStr(d.GetResources()), d.GetCount())
			}
			alloc := s.FrameworkAllocated(f.GetId())
			if len(alloc) > 0 {
				roles := make([]string, 0, len(alloc))
				for r := range alloc {
					roles = append(roles, r)
				}
				sort.Strings(roles)
				var parts []string
				for _, r := range roles {
					parts = append(parts, r+"("+alloc[r].String()+")")
				}
				fmt.Fprintf(&b, "  allocated=%s\n", strings.Join(parts, " "))
			}
		}
	}
	if want("offers") {
		for _, o := range s.Offers() {
			rev := ""
			if o.GetRevocable() {
				rev = " revocable"
			}
			fmt.Fprintf(&b, "offer %s fw=%s agent=%s role=%s res=[%s] expires=%s%s\n", o.GetId(), o.GetFrameworkId(), o.GetAgentId(), o.GetRole(), resStr(o.GetResources()), tsStr(o.GetExpiresAt()), rev)
		}
	}
	if want("tasks") {
		for _, t := range s.Tasks() {
			fmt.Fprintf(&b, "task %s/%s agent=%s role=%s %s res=[%s] ack=%v kill=%v", t.GetFrameworkId(), t.GetId(), t.GetAgentId(), t.GetRole(),
				short(t.GetState(), "TASK_STATE_"), resStr(t.GetResources()), t.GetAcknowledged(), t.GetKillRequested())
			if t.GetGroupId() != "" {
				fmt.Fprintf(&b, " group=%s", t.GetGroupId())
			}
			if len(t.GetVolumeIds()) > 0 {
				fmt.Fprintf(&b, " volumes=%v", t.GetVolumeIds())
			}
			if t.GetRevocable() {
				b.WriteString(" revocable")
			}
			if t.GetKillReason() != "" {
				fmt.Fprintf(&b, " kill-reason=%s", t.GetKillReason())
			}
			if st := t.GetStatus(); st != nil {
				fmt.Fprintf(&b, " status=%s/%s/%s", short(st.GetState(), "TASK_STATE_"), short(st.GetSource(), "STATUS_SOURCE_"), st.GetUuid())
			}
			b.WriteString("\n")
		}
	}
	if want("reservations") {
		for _, r := range s.Reservations() {
			fmt.Fprintf(&b, "reservation %s agent=%s role=%s res=[%s] principal=%s labels=%s\n", r.GetId(), r.GetAgentId(), r.GetRole(), resStr(r.GetResources()), r.GetPrincipal(), labels(r.GetLabels()))
		}
	}
	if want("volumes") {
		for _, v := range s.Volumes() {
			fmt.Fprintf(&b, "volume %s agent=%s role=%s size=%g path=%s\n", v.GetId(), v.GetAgentId(), v.GetRole(), v.GetSizeMib(), v.GetContainerPath())
		}
	}
	if want("records") {
		s.root.Root().WalkPrefix([]byte(pRecord), func(_ []byte, v interface{}) bool {
			r := v.(*agorav1.FrameworkRecord)
			fmt.Fprintf(&b, "record %s/%s version=%d value=%q\n", r.GetFrameworkId(), r.GetKey(), r.GetVersion(), truncate(r.GetValue(), 40))
			return false
		})
	}
	if want("preemptions") {
		for _, p := range s.Preemptions() {
			var victims []string
			for _, v := range p.GetVictims() {
				victims = append(victims, v.GetFrameworkId()+"/"+v.GetTaskId())
			}
			fmt.Fprintf(&b, "preemption %s fw=%s role=%s priority=%d agent=%s res=[%s] victims=%v decided=%s window=%g freed=%s deadline=%s\n",
				p.GetId(), p.GetFrameworkId(), p.GetRole(), p.GetPriority(), p.GetAgentId(), resStr(p.GetResources()), victims,
				tsStr(p.GetDecidedAt()), p.GetWindowSeconds(), tsStr(p.GetFreedAt()), tsStr(p.GetDeadline()))
		}
	}
	if b.Len() == 0 {
		return "(empty)\n"
	}
	return b.String()
}

func unmarshalText(s string, m proto.Message) error { return prototext.Unmarshal([]byte(s), m) }

// truncate shortens a record value for dumps.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("%s...(%d bytes)", b[:n], len(b))
}
