package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// explainJSON is `agora explain --json`.
type explainJSON struct {
	FrameworkID string              `json:"framework_id"`
	Roles       []string            `json:"roles"`
	Offered     uint64              `json:"offered"`
	Reasons     []explainReasonJSON `json:"reasons"`
	// Demands and Preemptions come from the leader's last preemption pass
	// and the preemptions in force.
	Demands     []explainDemandJSON     `json:"demands,omitempty"`
	Preemptions []explainPreemptionJSON `json:"preemptions,omitempty"`
}

type explainDemandJSON struct {
	Role       string `json:"role"`
	Shape      string `json:"shape"`
	Count      uint32 `json:"count"`
	Placed     uint32 `json:"placed"`
	Preempting uint32 `json:"preempting"`
	Unmet      uint32 `json:"unmet"`
	Reason     string `json:"reason,omitempty"`
}

type explainPreemptionJSON struct {
	ID        string   `json:"id"`
	Framework string   `json:"framework"`
	Role      string   `json:"role"`
	Agent     string   `json:"agent"`
	Resources string   `json:"resources"`
	Victims   []string `json:"victims"`
	Freed     bool     `json:"freed"`
}

// demandHelp says what an unmet demand's reason means.
var demandHelp = map[string]string{
	"unsatisfiable": "the shape is larger than any agent",
	"no_victims":    "no agent can make room from free resources, lower-priority offers and lower-priority revocable tasks",
}

type explainReasonJSON struct {
	Reason       string `json:"reason"`
	Count        uint64 `json:"count"`
	ExampleAgent string `json:"example_agent"`
}

// reasonHelp says in a few words what each allocator reason means (the
// allocator's package documentation has the rules).
var reasonHelp = map[string]string{
	"suppressed":              "the framework suppressed the role",
	"agent_draining":          "the agent is draining",
	"agent_unreachable":       "the agent is unreachable",
	"agent_restarting":        "the agent stopped for a restart and has not registered again",
	"declined_filter":         "the framework declined the agent; the filter has not expired",
	"max_utilization":         "a resource kind of the cluster is in use up to the role's max utilization (or what is left would pass it)",
	"role_limit":              "the role is at its limit",
	"quota_headroom":          "what is left is held for other roles' guarantees",
	"nothing_free":            "nothing left on the agent (tasks, offers, others' shares)",
	"reserved_for_other_role": "what is left is reserved for another role",
	"below_min_allocatable":   "what is left is below the minimum offer size",
}

func runExplain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: agora explain FRAMEWORK_ID [--json] [--addr URL]\n\n"+
			"Why the framework got no (or fewer) offers in the leader's last allocation round:\n"+
			"for each reason, how many (role, agent) pairs it counts and one agent as an example.\n\n")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs, false)
	fs.BoolVar(&cf.json, "json", false, "print JSON for scripts")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return fmt.Errorf("want exactly one framework id, got %d arguments", len(pos))
	}
	resp, err := cf.client().Operator.ExplainFramework(ctx, connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: pos[0]}))
	if err != nil {
		return cliError(err)
	}
	r := resp.Msg
	out := explainJSON{FrameworkID: r.FrameworkId, Roles: r.Roles, Offered: r.Offered, Reasons: []explainReasonJSON{}}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	for _, sr := range r.Reasons {
		out.Reasons = append(out.Reasons, explainReasonJSON{Reason: sr.Reason, Count: sr.Count, ExampleAgent: sr.ExampleAgent})
	}
	for _, d := range r.Demands {
		out.Demands = append(out.Demands, explainDemandJSON{Role: d.Role, Shape: poolsString(d.Resources), Count: d.Count,
			Placed: d.Placed, Preempting: d.Preempting, Unmet: d.Unmet, Reason: d.Reason})
	}
	for _, p := range r.Preemptions {
		pj := explainPreemptionJSON{ID: p.Id, Framework: p.FrameworkId, Role: p.Role, Agent: p.AgentId,
			Resources: poolsString(p.Resources), Freed: p.FreedAt != nil}
		for _, v := range p.Victims {
			pj.Victims = append(pj.Victims, v.FrameworkId+"/"+v.TaskId)
		}
		out.Preemptions = append(out.Preemptions, pj)
	}
	if cf.json {
		return printJSON(os.Stdout, out)
	}
	fmt.Printf("framework %s (roles %s), last allocation round at index %d (%s)\n",
		out.FrameworkID, orDash(strings.Join(out.Roles, ",")), r.RoundIndex, orDash(tsString(r.RoundTime)))
	fmt.Printf("offered: %d\n", out.Offered)
	if len(out.Reasons) == 0 {
		fmt.Println("no (role, agent) was passed over")
	} else {
		tw := newTable(os.Stdout, "REASON", "COUNT", "EXAMPLE AGENT", "MEANING")
		for _, sr := range out.Reasons {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", sr.Reason, sr.Count, orDash(sr.ExampleAgent), orDash(reasonHelp[sr.Reason]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(out.Demands) > 0 {
		fmt.Println("demand (last preemption pass):")
		tw := newTable(os.Stdout, "ROLE", "SHAPE", "COUNT", "PLACED", "PREEMPTING", "UNMET", "WHY")
		for _, d := range out.Demands {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", d.Role, d.Shape, d.Count, d.Placed, d.Preempting, d.Unmet, orDash(demandHelp[d.Reason]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(out.Preemptions) > 0 {
		fmt.Println("preemptions in force:")
		tw := newTable(os.Stdout, "ID", "FOR", "AGENT", "RESOURCES", "VICTIMS", "FREED")
		for _, p := range out.Preemptions {
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%v\n", p.ID, p.Framework, p.Role, p.Agent, p.Resources, strings.Join(p.Victims, ","), p.Freed)
		}
		return tw.Flush()
	}
	return nil
}
