package ui

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// mastersWait bounds how long the overview waits for the other masters.
const mastersWait = 500 * time.Millisecond

// logWait bounds the fetch of a task's log tail from its agent.
const logWait = 2 * time.Second

// enumName turns "TASK_STATE_RUNNING" into "RUNNING".
func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func taskState(t agorav1.TaskState) string   { return enumName(t.String(), "TASK_STATE_") }
func agentState(a agorav1.AgentState) string { return enumName(a.String(), "AGENT_STATE_") }
func fwState(f agorav1.FrameworkState) string {
	return enumName(f.String(), "FRAMEWORK_STATE_")
}

// --- overview ---

type countRow struct {
	Name  string
	Count int
}

// kindUse is one scalar resource kind summed over the cluster.
type kindUse struct {
	Name                             string
	Total, Used, Offered, Reserved   float64
	UsedPct, OfferedPct, ReservedPct float64
	TotalText, UsedText, OfferedText string
	ReservedText                     string
}

type roleShare struct {
	Name     string
	Share    float64 // dominant share, 0..1
	SharePct float64
	Kind     string // the dominant kind
}

type overviewData struct {
	Masters     []MasterView
	Agents      []countRow
	Tasks       []countRow
	Frameworks  []countRow
	AgentsTotal int
	TasksTotal  int
	FwTotal     int
	Offers      int
	Resv        int
	Volumes     int
	Roles       int
	Services    int
	Kinds       []kindUse
	RoleShares  []roleShare
}

func countsOf(m map[string]int) []countRow {
	out := make([]countRow, 0, len(m))
	for k, v := range m {
		out = append(out, countRow{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// clusterTotals sums the scalar resources of every agent that is not
// gone: capacity, used, offered and reserved, in milli-units.
type clusterTotals struct {
	total, used, offered, reserved map[string]int64
}

func totals(st *fsm.State) clusterTotals {
	u := st.ClusterUsage()
	return clusterTotals{total: u.Total, used: u.Used, offered: u.Offered, reserved: u.Reserved}
}

// dominant returns the largest share of alloc in the cluster's totals.
func (c clusterTotals) dominant(alloc resources.Resources) (float64, string) {
	best, kind := 0.0, ""
	for _, n := range alloc.Names() {
		t := c.total[n]
		if t <= 0 {
			continue
		}
		if s := float64(alloc.Scalars[n]) / float64(t); s > best {
			best, kind = s, n
		}
	}
	return best, kind
}

func pct(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return min(100, 100*part/whole)
}

func milli(v int64) string { return resources.FormatMilli(v) }

func (h *Handler) overview(r *http.Request, v View) (*page, error) {
	st := v.State
	d := overviewData{}
	ctx, cancel := context.WithTimeout(r.Context(), mastersWait)
	d.Masters = h.src.Masters(ctx)
	cancel()

	byState := map[string]int{}
	agents := st.Agents()
	for _, a := range agents {
		byState[agentState(a.GetState())]++
	}
	d.Agents, d.AgentsTotal = countsOf(byState), len(agents)

	byState = map[string]int{}
	tasks := st.Tasks()
	for _, t := range tasks {
		byState[taskState(t.GetState())]++
	}
	d.Tasks, d.TasksTotal = countsOf(byState), len(tasks)

	byState = map[string]int{}
	fws := st.Frameworks()
	for _, f := range fws {
		byState[fwState(f.GetState())]++
	}
	d.Frameworks, d.FwTotal = countsOf(byState), len(fws)
	d.Offers, d.Resv, d.Volumes, d.Roles = len(st.Offers()), len(st.Reservations()), len(st.Volumes()), len(st.Roles())
	if svcs, err := h.src.Services(st); err == nil {
		d.Services = len(svcs)
	}

	c := totals(st)
	names := make([]string, 0, len(c.total))
	for n := range c.total {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := float64(c.total[n])
		k := kindUse{Name: n, Total: t, Used: float64(c.used[n]), Offered: float64(c.offered[n]), Reserved: float64(c.reserved[n]),
			TotalText: milli(c.total[n]), UsedText: milli(c.used[n]), OfferedText: milli(c.offered[n]), ReservedText: milli(c.reserved[n])}
		k.UsedPct, k.OfferedPct, k.ReservedPct = pct(k.Used, t), pct(k.Offered, t), pct(k.Reserved, t)
		d.Kinds = append(d.Kinds, k)
	}
	for _, rr := range roleRows(st, c) {
		d.RoleShares = append(d.RoleShares, roleShare{Name: rr.Name, Share: rr.Share, SharePct: 100 * rr.Share, Kind: rr.DominantKind})
	}
	return &page{Template: "overview", Title: "Overview", Nav: "overview", Live: true, Data: d}, nil
}

// --- roles ---

type roleRow struct {
	Name           string
	Configured     bool
	Weight         float64
	Priority       int32
	MaxUtilization float64
	Guarantee      string
	Limit          string
	Allocated      string
	Reserved       string
	Frameworks     int
	Share          float64
	SharePct       float64
	DominantKind   string
}

// roleRows lists configured roles and the roles frameworks hold, with
// what each holds (tasks and outstanding offers of live frameworks) and
// its dominant share of the cluster.
func roleRows(st *fsm.State, c clusterTotals) []roleRow {
	rows := map[string]*roleRow{}
	get := func(n string) *roleRow {
		if r, ok := rows[n]; ok {
			return r
		}
		r := &roleRow{Name: n, Weight: 1}
		rows[n] = r
		return r
	}
	for _, ro := range st.Roles() {
		r := get(ro.GetName())
		r.Configured = true
		if ro.GetWeight() > 0 {
			r.Weight = ro.GetWeight()
		}
		r.Priority, r.MaxUtilization = ro.GetPriority(), ro.GetMaxUtilization()
		r.Guarantee, r.Limit = resText(ro.GetGuarantee()), resText(ro.GetLimit())
	}
	alloc := map[string]resources.Resources{}
	for _, f := range st.Frameworks() {
		if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
			continue
		}
		for _, role := range f.GetInfo().GetRoles() {
			get(role).Frameworks++
		}
		for role, res := range st.FrameworkAllocated(f.GetId()) {
			alloc[role] = alloc[role].Add(res)
			get(role)
		}
	}
	resv := map[string]resources.Resources{}
	for _, rv := range st.Reservations() {
		p, err := resourcepb.FromProto(rv.GetResources())
		if err != nil {
			continue
		}
		resv[rv.GetRole()] = resv[rv.GetRole()].Add(p.Total())
	}
	out := make([]roleRow, 0, len(rows))
	for n, r := range rows {
		r.Allocated = alloc[n].String()
		r.Reserved = resv[n].String()
		r.Share, r.DominantKind = c.dominant(alloc[n])
		r.SharePct = 100 * r.Share
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (h *Handler) roles(_ *http.Request, v View) (*page, error) {
	return &page{Template: "roles", Title: "Roles", Nav: "roles", Live: true, Data: roleRows(v.State, totals(v.State))}, nil
}

// --- agents ---

type agentRow struct {
	ID, Hostname, Address, State string
	Since                        time.Time
	Total, Used, Reserved        string
	Offered, Revocable           string
	Attributes                   string
	Tasks                        int
	Drain                        *agorav1.AgentDrain
	DrainDeadline                string
}

func resText(rs []*agorav1.Resource) string {
	p, err := resourcepb.FromProto(rs)
	if err != nil {
		return "(invalid)"
	}
	return p.String()
}

func attrText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func agentRowOf(st *fsm.State, a *agorav1.Agent) agentRow {
	u := st.AgentUsage(a.GetId())
	row := agentRow{ID: a.GetId(), Hostname: a.GetHostname(), Address: a.GetAddress(), State: agentState(a.GetState()),
		Since: a.GetStateSince().AsTime(), Total: u.Total.String(), Used: u.Used.String(), Reserved: u.Reserved.String(),
		Offered: u.Offered.String(), Attributes: attrText(a.GetAttributes()), Drain: a.GetDrain()}
	var revocable resources.Resources
	for _, t := range st.TasksByAgent(a.GetId()) {
		if fsm.IsTerminal(t.GetState()) {
			continue
		}
		row.Tasks++
		if t.GetRevocable() {
			if p, err := resourcepb.FromProto(t.GetResources()); err == nil {
				revocable = revocable.Add(p.Total())
			}
		}
	}
	row.Revocable = revocable.String()
	if dl := a.GetDrain().GetDeadline(); dl != nil {
		row.DrainDeadline = dl.AsTime().UTC().Format(time.RFC3339)
	}
	return row
}

type agentsData struct {
	Rows   []agentRow
	Pager  pager
	Filter string
}

func (h *Handler) agents(r *http.Request, v View) (*page, error) {
	all := v.State.Agents()
	filter := strings.ToUpper(r.URL.Query().Get("state"))
	if filter != "" {
		if _, ok := agorav1.AgentState_value["AGENT_STATE_"+filter]; !ok {
			return nil, errBadRequest("unknown agent state %q", r.URL.Query().Get("state"))
		}
		kept := all[:0:0]
		for _, a := range all {
			if agentState(a.GetState()) == filter {
				kept = append(kept, a)
			}
		}
		all = kept
	}
	pg, err := paginate(r, len(all))
	if err != nil {
		return nil, err
	}
	d := agentsData{Pager: pg, Filter: filter}
	for _, a := range slice(all, pg) {
		d.Rows = append(d.Rows, agentRowOf(v.State, a))
	}
	return &page{Template: "agents", Title: "Agents", Nav: "agents", Live: true, Data: d}, nil
}

type agentData struct {
	Agent        agentRow
	Tasks        []taskRow
	TasksPager   pager
	Reservations []*agorav1.Reservation
	Volumes      []*agorav1.Volume
	Offers       []*agorav1.Offer
}

func (h *Handler) agent(r *http.Request, v View) (*page, error) {
	id := r.PathValue("id")
	a, ok := v.State.Agent(id)
	if !ok {
		return nil, errNotFound("agent %q does not exist", id)
	}
	tasks := v.State.TasksByAgent(id)
	pg, err := paginate(r, len(tasks))
	if err != nil {
		return nil, err
	}
	d := agentData{Agent: agentRowOf(v.State, a), TasksPager: pg, Reservations: v.State.ReservationsByAgent(id),
		Volumes: v.State.VolumesByAgent(id), Offers: v.State.OffersByAgent(id)}
	for _, t := range slice(tasks, pg) {
		d.Tasks = append(d.Tasks, taskRowOf(t))
	}
	return &page{Template: "agent", Title: "Agent " + id, Nav: "agents", Live: true, Data: d}, nil
}

// --- frameworks ---

type demandRow struct {
	Role      string
	Resources string
	Count     uint32
}

type frameworkRow struct {
	ID, Name, Principal, State string
	Roles                      string
	Suppressed                 string
	Capabilities               string
	Registered                 time.Time
	// FailoverLeft is the time left before a disconnected framework is
	// torn down ("" when connected).
	FailoverLeft string
	Offers       int
	Tasks        int
	Demand       []demandRow
	WebUI        string
}

func frameworkRowOf(st *fsm.State, f *agorav1.Framework, now time.Time) frameworkRow {
	info := f.GetInfo()
	row := frameworkRow{ID: f.GetId(), Name: info.GetName(), Principal: info.GetPrincipal(), State: fwState(f.GetState()),
		Roles: strings.Join(info.GetRoles(), ", "), Suppressed: strings.Join(f.GetSuppressedRoles(), ", "),
		Registered: f.GetRegisteredAt().AsTime(), Offers: len(st.OffersByFramework(f.GetId())), WebUI: info.GetWebuiUrl()}
	caps := make([]string, 0, len(info.GetCapabilities()))
	for _, c := range info.GetCapabilities() {
		caps = append(caps, enumName(c.String(), "CAPABILITY_"))
	}
	row.Capabilities = strings.Join(caps, ", ")
	for _, t := range st.TasksByFramework(f.GetId()) {
		if !fsm.IsTerminal(t.GetState()) {
			row.Tasks++
		}
	}
	if f.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_DISCONNECTED && f.GetDisconnectedAt() != nil {
		end := f.GetDisconnectedAt().AsTime().Add(time.Duration(info.GetFailoverTimeoutSeconds() * float64(time.Second)))
		left := end.Sub(now)
		if left < 0 {
			row.FailoverLeft = "expired, teardown pending"
		} else {
			row.FailoverLeft = left.Round(time.Second).String()
		}
	}
	for _, dm := range f.GetDemand() {
		row.Demand = append(row.Demand, demandRow{Role: dm.GetRole(), Resources: resText(dm.GetResources()), Count: dm.GetCount()})
	}
	return row
}

type frameworksData struct {
	Rows  []frameworkRow
	Pager pager
}

func (h *Handler) frameworks(r *http.Request, v View) (*page, error) {
	all := v.State.Frameworks()
	pg, err := paginate(r, len(all))
	if err != nil {
		return nil, err
	}
	d := frameworksData{Pager: pg}
	for _, f := range slice(all, pg) {
		d.Rows = append(d.Rows, frameworkRowOf(v.State, f, v.Now))
	}
	return &page{Template: "frameworks", Title: "Frameworks", Nav: "frameworks", Live: true, Data: d}, nil
}

type frameworkData struct {
	Framework frameworkRow
	Offers    []*agorav1.Offer
	Filters   []*agorav1.OfferFilter
}

func (h *Handler) framework(r *http.Request, v View) (*page, error) {
	id := r.PathValue("id")
	f, ok := v.State.Framework(id)
	if !ok {
		return nil, errNotFound("framework %q does not exist", id)
	}
	d := frameworkData{Framework: frameworkRowOf(v.State, f, v.Now), Offers: v.State.OffersByFramework(id), Filters: f.GetFilters()}
	return &page{Template: "framework", Title: "Framework " + id, Nav: "frameworks", Live: true, Data: d}, nil
}

type explainData struct {
	FrameworkID string
	Resp        *agorav1.ExplainFrameworkResponse
	Error       string
	// LeaderLink is the leader's explain page when this master cannot
	// explain.
	LeaderLink string
}

func (h *Handler) explain(r *http.Request, v View) (*page, error) {
	id := r.PathValue("id")
	if _, ok := v.State.Framework(id); !ok {
		return nil, errNotFound("framework %q does not exist", id)
	}
	d := explainData{FrameworkID: id}
	resp, err := h.src.Explain(r.Context(), id)
	if err != nil {
		d.Error = err.Error()
		if connect.CodeOf(err) == connect.CodeUnavailable && v.LeaderURL != "" && v.LeaderID != v.Self {
			d.LeaderLink = v.LeaderURL + "/ui/frameworks/" + id + "/explain"
		}
	}
	d.Resp = resp
	return &page{Template: "explain", Title: "Explain " + id, Nav: "frameworks", Data: d}, nil
}

// --- tasks ---

type taskRow struct {
	ID, Name, FrameworkID, AgentID, Role string
	State, Reason, Message               string
	Resources                            string
	Revocable                            bool
	Updated                              time.Time
	Volumes                              string
}

func taskRowOf(t *agorav1.Task) taskRow {
	row := taskRow{ID: t.GetId(), Name: t.GetName(), FrameworkID: t.GetFrameworkId(), AgentID: t.GetAgentId(), Role: t.GetRole(),
		State: taskState(t.GetState()), Reason: t.GetStatus().GetReason(), Message: t.GetStatus().GetMessage(),
		Resources: resText(t.GetResources()), Revocable: t.GetRevocable(), Volumes: strings.Join(t.GetVolumeIds(), ", ")}
	if row.Reason == "" {
		row.Reason = t.GetKillReason()
	}
	if ts := t.GetStatus().GetTimestamp(); ts != nil {
		row.Updated = ts.AsTime()
	}
	return row
}

type tasksData struct {
	Rows                    []taskRow
	Pager                   pager
	State, Framework, Agent string
}

func (h *Handler) tasks(r *http.Request, v View) (*page, error) {
	q := r.URL.Query()
	d := tasksData{State: strings.ToUpper(q.Get("state")), Framework: q.Get("framework"), Agent: q.Get("agent")}
	var all []*agorav1.Task
	switch {
	case d.Framework != "":
		if _, ok := v.State.Framework(d.Framework); !ok {
			return nil, errNotFound("framework %q does not exist", d.Framework)
		}
		all = v.State.TasksByFramework(d.Framework)
	case d.Agent != "":
		all = v.State.TasksByAgent(d.Agent)
	default:
		all = v.State.Tasks()
	}
	if d.Agent != "" {
		if _, ok := v.State.Agent(d.Agent); !ok {
			return nil, errNotFound("agent %q does not exist", d.Agent)
		}
	}
	if d.State != "" {
		if _, ok := agorav1.TaskState_value["TASK_STATE_"+d.State]; !ok {
			return nil, errBadRequest("unknown task state %q", q.Get("state"))
		}
	}
	if d.State != "" || (d.Framework != "" && d.Agent != "") {
		kept := all[:0:0]
		for _, t := range all {
			if (d.State == "" || taskState(t.GetState()) == d.State) && (d.Agent == "" || t.GetAgentId() == d.Agent) {
				kept = append(kept, t)
			}
		}
		all = kept
	}
	pg, err := paginate(r, len(all))
	if err != nil {
		return nil, err
	}
	d.Pager = pg
	for _, t := range slice(all, pg) {
		d.Rows = append(d.Rows, taskRowOf(t))
	}
	return &page{Template: "tasks", Title: "Tasks", Nav: "tasks", Live: true, Data: d}, nil
}

type logTail struct {
	Stream string
	Text   string
	Error  string
}

type taskData struct {
	Task    taskRow
	Command string
	Logs    []logTail
}

func (h *Handler) task(r *http.Request, v View) (*page, error) {
	fid, tid := r.PathValue("fid"), r.PathValue("tid")
	t, ok := v.State.Task(fid, tid)
	if !ok {
		return nil, errNotFound("task %q of framework %q does not exist", tid, fid)
	}
	d := taskData{Task: taskRowOf(t), Command: t.GetCommand().GetValue()}
	a, known := v.State.Agent(t.GetAgentId())
	for _, stream := range []string{"stdout", "stderr"} {
		lt := logTail{Stream: stream}
		switch {
		case !known:
			lt.Error = "the task's agent is no longer known"
		case a.GetAddress() == "":
			lt.Error = "the agent serves no HTTP address (started without --http)"
		default:
			ctx, cancel := context.WithTimeout(r.Context(), logWait)
			b, err := h.src.TaskLog(ctx, a.GetAddress(), fid, tid, stream, LogTailBytes)
			cancel()
			if err != nil {
				lt.Error = err.Error()
			} else {
				lt.Text = string(b)
			}
		}
		d.Logs = append(d.Logs, lt)
	}
	return &page{Template: "task", Title: "Task " + tid, Nav: "tasks", Live: true, Data: d}, nil
}

// --- offers, reservations, volumes ---

type offersData struct {
	Rows  []*agorav1.Offer
	Pager pager
}

func (h *Handler) offers(r *http.Request, v View) (*page, error) {
	all := v.State.Offers()
	pg, err := paginate(r, len(all))
	if err != nil {
		return nil, err
	}
	return &page{Template: "offers", Title: "Offers", Nav: "offers", Live: true, Data: offersData{Rows: slice(all, pg), Pager: pg}}, nil
}

type reservationsData struct {
	Reservations []*agorav1.Reservation
	Volumes      []*agorav1.Volume
	Pager        pager
	// Kind is "reservations" or "volumes": the list being paged.
	Kind string
}

func (h *Handler) reservations(r *http.Request, v View) (*page, error) {
	d := reservationsData{Kind: r.URL.Query().Get("kind")}
	switch d.Kind {
	case "", "reservations":
		d.Kind = "reservations"
		all := v.State.Reservations()
		pg, err := paginate(r, len(all))
		if err != nil {
			return nil, err
		}
		d.Pager, d.Reservations = pg, slice(all, pg)
	case "volumes":
		all := v.State.Volumes()
		pg, err := paginate(r, len(all))
		if err != nil {
			return nil, err
		}
		d.Pager, d.Volumes = pg, slice(all, pg)
	default:
		return nil, errBadRequest("kind %q: want reservations or volumes", d.Kind)
	}
	return &page{Template: "reservations", Title: "Reservations and volumes", Nav: "reservations", Live: true, Data: d}, nil
}

// --- services ---

type serviceRow struct {
	Service
	Ready, Pods int
}

func (h *Handler) services(_ *http.Request, v View) (*page, error) {
	svcs, err := h.src.Services(v.State)
	if err != nil {
		return nil, err
	}
	rows := make([]serviceRow, 0, len(svcs))
	for _, s := range svcs {
		row := serviceRow{Service: s, Pods: len(s.Status.Pods)}
		for _, p := range s.Status.Pods {
			if p.Ready {
				row.Ready++
			}
		}
		rows = append(rows, row)
	}
	return &page{Template: "services", Title: "Services", Nav: "services", Live: true, Data: rows}, nil
}

func (h *Handler) service(r *http.Request, v View) (*page, error) {
	name := r.PathValue("name")
	svcs, err := h.src.Services(v.State)
	if err != nil {
		return nil, err
	}
	for _, s := range svcs {
		if s.Name == name {
			row := serviceRow{Service: s, Pods: len(s.Status.Pods)}
			for _, p := range s.Status.Pods {
				if p.Ready {
					row.Ready++
				}
			}
			return &page{Template: "service", Title: "Service " + name, Nav: "services", Live: true, Data: row}, nil
		}
	}
	return nil, errNotFound("service %q does not exist", name)
}
