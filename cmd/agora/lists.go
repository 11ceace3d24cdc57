package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func sortStrings(s []string) { sort.Strings(s) }

func listFlags(name string, args []string) (*clientFlags, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cf := &clientFlags{}
	cf.register(fs, true)
	pos, err := parseArgs(fs, args)
	return cf, pos, err
}

func runAgents(ctx context.Context, args []string) error {
	cf, _, err := listFlags("agents", args)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0, len(resp.Msg.Agents))
		for _, v := range resp.Msg.Agents {
			a := v.Agent
			out = append(out, map[string]any{
				"id": a.Id, "address": a.Address, "hostname": a.Hostname, "state": agentState(a.State),
				"resources": map[string]string{"total": poolsString(a.Resources), "used": poolsString(v.Used),
					"offered": poolsString(v.Offered), "reserved": poolsString(v.Reserved)},
				"attributes": a.Attributes, "since": tsString(a.StateSince), "registered_at": tsString(a.RegisteredAt),
				"version": a.Version, "drain": drainJSON(a.GetDrain()),
			})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "ID", "ADDRESS", "STATE", "TOTAL", "USED", "RESERVED", "ATTRIBUTES", "SINCE", "DRAIN")
	for _, v := range resp.Msg.Agents {
		a := v.Agent
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Id, orDash(a.Address), agentState(a.State), poolsString(a.Resources),
			poolsString(v.Used), poolsString(v.Reserved), orDash(attrString(a.Attributes)), tsString(a.StateSince), drainString(a.GetDrain()))
	}
	return tw.Flush()
}

func attrString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+":"+m[k])
	}
	return strings.Join(parts, ";")
}

func runTasks(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("tasks", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	fw := fs.String("framework", "", "only tasks of this framework")
	ag := fs.String("agent", "", "only tasks on this agent")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{Read: cf.read(), FrameworkId: *fw, AgentId: *ag}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0, len(resp.Msg.Tasks))
		for _, t := range resp.Msg.Tasks {
			reason := ""
			if t.Status != nil {
				reason = t.Status.Reason
			}
			out = append(out, map[string]any{"id": t.Id, "name": t.Name, "framework": t.FrameworkId, "agent": t.AgentId,
				"state": taskState(t.State), "resources": poolsString(t.Resources), "reason": reason, "role": t.Role,
				"acknowledged": t.Acknowledged, "revocable": t.Revocable})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "ID", "FRAMEWORK", "AGENT", "STATE", "RESOURCES", "REVOCABLE", "REASON")
	for _, t := range resp.Msg.Tasks {
		reason := ""
		if t.Status != nil {
			reason = t.Status.Reason
		}
		revocable := "no"
		if t.Revocable {
			revocable = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, t.FrameworkId, t.AgentId, taskState(t.State), poolsString(t.Resources), revocable, orDash(reason))
	}
	return tw.Flush()
}

func runFrameworks(ctx context.Context, args []string) error {
	cf, _, err := listFlags("frameworks", args)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0, len(resp.Msg.Frameworks))
		for _, f := range resp.Msg.Frameworks {
			info := f.Info
			if info == nil {
				info = &agorav1.FrameworkInfo{}
			}
			out = append(out, map[string]any{"id": f.Id, "name": info.Name, "principal": info.Principal, "roles": info.Roles,
				"state": frameworkState(f.State), "failover_timeout_seconds": info.FailoverTimeoutSeconds,
				"registered_at": tsString(f.RegisteredAt), "disconnected_at": tsString(f.DisconnectedAt),
				"suppressed_roles": f.SuppressedRoles})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "ID", "NAME", "STATE", "ROLES", "FAILOVER", "REGISTERED", "PRINCIPAL")
	for _, f := range resp.Msg.Frameworks {
		info := f.Info
		if info == nil {
			info = &agorav1.FrameworkInfo{}
		}
		principal := info.Principal
		if principal == "" {
			principal = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%gs\t%s\t%s\n", f.Id, info.Name, frameworkState(f.State), strings.Join(info.Roles, ","),
			info.FailoverTimeoutSeconds, tsString(f.RegisteredAt), principal)
	}
	return tw.Flush()
}

func runOffers(ctx context.Context, args []string) error {
	cf, _, err := listFlags("offers", args)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListOffers(ctx, connect.NewRequest(&agorav1.ListOffersRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0, len(resp.Msg.Offers))
		for _, o := range resp.Msg.Offers {
			out = append(out, map[string]any{"id": o.Id, "framework": o.FrameworkId, "agent": o.AgentId, "role": o.Role,
				"resources": poolsString(o.Resources), "created_at": tsString(o.CreatedAt), "expires_at": tsString(o.ExpiresAt)})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "ID", "FRAMEWORK", "AGENT", "ROLE", "RESOURCES", "EXPIRES")
	for _, o := range resp.Msg.Offers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Id, o.FrameworkId, o.AgentId, o.Role, poolsString(o.Resources), tsString(o.ExpiresAt))
	}
	return tw.Flush()
}

func runReservations(ctx context.Context, args []string) error {
	cf, _, err := listFlags("reservations", args)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListReservations(ctx, connect.NewRequest(&agorav1.ListReservationsRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0)
		for _, r := range resp.Msg.Reservations {
			out = append(out, map[string]any{"id": r.Id, "kind": "reservation", "agent": r.AgentId, "role": r.Role,
				"resources": poolsString(r.Resources), "principal": r.Principal, "labels": r.Labels})
		}
		for _, v := range resp.Msg.Volumes {
			out = append(out, map[string]any{"id": v.Id, "kind": "volume", "agent": v.AgentId, "role": v.Role,
				"size_mib": v.SizeMib, "container_path": v.ContainerPath, "principal": v.Principal})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "ID", "KIND", "AGENT", "ROLE", "RESOURCES")
	for _, r := range resp.Msg.Reservations {
		fmt.Fprintf(tw, "%s\treservation\t%s\t%s\t%s\n", r.Id, r.AgentId, r.Role, poolsString(r.Resources))
	}
	for _, v := range resp.Msg.Volumes {
		fmt.Fprintf(tw, "%s\tvolume\t%s\t%s\tdisk:%g at %s\n", v.Id, v.AgentId, v.Role, v.SizeMib, v.ContainerPath)
	}
	return tw.Flush()
}

func runKillFramework(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kill-framework", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one framework id, got %d", len(pos))
	}
	if _, err := cf.client().Operator.TeardownFramework(ctx, connect.NewRequest(&agorav1.TeardownFrameworkRequest{FrameworkId: pos[0]})); err != nil {
		return cliError(err)
	}
	fmt.Printf("framework %s torn down; its tasks are being killed\n", pos[0])
	return nil
}
