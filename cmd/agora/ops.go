package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

type masterJSON struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage,omitempty"`
	State    string `json:"state,omitempty"`
}

func masterState(s agorav1.MasterState) string {
	return strings.ToLower(enumName(s.String(), "MASTER_STATE_"))
}

func toMasterJSON(ms []*agorav1.Master) []masterJSON {
	out := make([]masterJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, masterJSON{ID: m.Id, Address: m.HttpAddress, Suffrage: m.Suffrage, State: masterState(m.State)})
	}
	return out
}

func runStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	resp, err := cf.client().Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	st := resp.Msg
	var leader *masterJSON
	if st.Leader != nil && st.Leader.Id != "" {
		leader = &masterJSON{ID: st.Leader.Id, Address: st.Leader.HttpAddress}
	}
	c := st.Counts
	if c == nil {
		c = &agorav1.Counts{}
	}
	raftJSON := map[string]any{}
	if r := st.Raft; r != nil {
		raftJSON = map[string]any{"term": r.Term, "commit_index": r.CommitIndex, "applied_index": r.AppliedIndex,
			"last_snapshot_index": r.LastSnapshotIndex, "state": r.State}
	}
	if cf.json {
		return printJSON(os.Stdout, map[string]any{
			"leader": leader, "masters": toMasterJSON(st.Masters), "raft": raftJSON,
			"answered_by": st.AnsweredBy, "cluster": st.Cluster,
			"agents": c.Agents, "frameworks": c.Frameworks, "tasks": c.Tasks, "offers": c.Offers,
			"roles": c.Roles, "reservations": c.Reservations, "volumes": c.Volumes,
			"agents_by_state": nonNil(c.AgentsByState), "tasks_by_state": nonNil(c.TasksByState),
		})
	}
	if leader != nil {
		fmt.Printf("leader:      %s %s\n", leader.ID, leader.Address)
	} else {
		fmt.Printf("leader:      none\n")
	}
	if r := st.Raft; r != nil {
		fmt.Printf("raft:        term %d, commit %d, applied %d, snapshot %d (answered by %s, %s)\n",
			r.Term, r.CommitIndex, r.AppliedIndex, r.LastSnapshotIndex, st.AnsweredBy, r.State)
	}
	fmt.Printf("agents:      %d %s\n", c.Agents, byState(c.AgentsByState))
	fmt.Printf("frameworks:  %d\n", c.Frameworks)
	fmt.Printf("tasks:       %d %s\n", c.Tasks, byState(c.TasksByState))
	fmt.Printf("offers:      %d\n", c.Offers)
	fmt.Printf("roles:       %d\n\n", c.Roles)
	tw := newTable(os.Stdout, "MASTER", "ADDRESS", "SUFFRAGE", "STATE")
	for _, m := range toMasterJSON(st.Masters) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, orDash(m.Address), orDash(m.Suffrage), orDash(m.State))
	}
	return tw.Flush()
}

func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return m
}

func byState(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func runRole(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: agora role set NAME [--weight W] [--guarantee SPEC] [--limit SPEC] [--priority P] [--max-utilization F]\n       agora role rm NAME")
		return errUsage
	}
	switch args[0] {
	case "set":
		return runRoleSet(ctx, args[1:])
	case "rm", "delete", "remove":
		return runRoleRm(ctx, args[1:])
	}
	return fmt.Errorf("unknown role subcommand %q (want set or rm)", args[0])
}

func runRoleSet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("role set", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	weight := fs.Float64("weight", 1, "DRF weight")
	guarantee := fs.String("guarantee", "", "quota guarantee, e.g. 'cpus:2;mem:1024'")
	limit := fs.String("limit", "", "quota limit, e.g. 'cpus:8;mem:8192'")
	priority := fs.Int("priority", 0, "priority (higher is offered first)")
	maxUtil := fs.Float64("max-utilization", 0, "no new offers once cluster utilization passes this fraction (0 = no cap)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one role name, got %d", len(pos))
	}
	if *priority > math.MaxInt32 || *priority < math.MinInt32 {
		return fmt.Errorf("priority %d out of range", *priority)
	}
	g, err := parseScalarSpec(*guarantee)
	if err != nil {
		return fmt.Errorf("--guarantee: %w", err)
	}
	l, err := parseScalarSpec(*limit)
	if err != nil {
		return fmt.Errorf("--limit: %w", err)
	}
	role := &agorav1.Role{Name: pos[0], Weight: *weight, Guarantee: g, Limit: l, Priority: int32(*priority), MaxUtilization: *maxUtil}
	// The client does not repeat a SetRole whose outcome it does not know
	// (a duplicate after another writer's SetRole would undo that one); an
	// operator setting a role wants it set, so the CLI tries again.
	c := cf.client()
	resp, err := c.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: role}))
	for try := 1; try < 3 && errors.Is(err, client.ErrOutcomeUnknown) && ctx.Err() == nil; try++ {
		resp, err = c.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: role}))
	}
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("role %s set (index %d)\n", role.Name, resp.Msg.Index)
	return nil
}

func runRoleRm(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("role rm", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one role name, got %d", len(pos))
	}
	resp, err := cf.client().Operator.DeleteRole(ctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: pos[0]}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("role %s removed (index %d)\n", pos[0], resp.Msg.Index)
	return nil
}

func runRoles(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("roles", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListRoles(ctx, connect.NewRequest(&agorav1.ListRolesRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	if cf.json {
		out := make([]map[string]any, 0, len(resp.Msg.Roles))
		for _, r := range resp.Msg.Roles {
			out = append(out, map[string]any{"name": r.Name, "weight": effWeight(r.Weight), "guarantee": scalarMap(r.Guarantee),
				"limit": scalarMap(r.Limit), "priority": r.Priority, "max_utilization": r.MaxUtilization})
		}
		return printJSON(os.Stdout, out)
	}
	tw := newTable(os.Stdout, "NAME", "WEIGHT", "GUARANTEE", "LIMIT", "PRIORITY", "MAX-UTIL")
	for _, r := range resp.Msg.Roles {
		fmt.Fprintf(tw, "%s\t%g\t%s\t%s\t%d\t%g\n", r.Name, effWeight(r.Weight), poolsString(r.Guarantee), poolsString(r.Limit), r.Priority, r.MaxUtilization)
	}
	return tw.Flush()
}

func effWeight(w float64) float64 {
	if w <= 0 {
		return 1
	}
	return w
}

func runRaft(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, raftUsage)
		return errUsage
	}
	if ok, err := runRaftMore(ctx, args[0], args[1:]); ok {
		return err
	}
	switch args[0] {
	case "peers":
		fs := flag.NewFlagSet("raft peers", flag.ContinueOnError)
		var cf clientFlags
		cf.register(fs, true)
		if _, err := parseArgs(fs, args[1:]); err != nil {
			return err
		}
		resp, err := cf.client().Operator.ListPeers(ctx, connect.NewRequest(&agorav1.ListPeersRequest{Read: cf.read()}))
		if err != nil {
			return cliError(err)
		}
		ms := toMasterJSON(resp.Msg.Peers)
		if cf.json {
			return printJSON(os.Stdout, ms)
		}
		tw := newTable(os.Stdout, "ID", "ADDRESS", "RAFT", "SUFFRAGE", "STATE")
		for i, m := range ms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, orDash(m.Address), orDash(resp.Msg.Peers[i].RaftAddress), orDash(m.Suffrage), orDash(m.State))
		}
		return tw.Flush()
	case "remove", "rm":
		fs := flag.NewFlagSet("raft remove", flag.ContinueOnError)
		var cf clientFlags
		cf.register(fs, false)
		pos, err := parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("want exactly one master id, got %d", len(pos))
		}
		if _, err := cf.client().Operator.RemovePeer(ctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: pos[0]})); err != nil {
			return cliError(err)
		}
		fmt.Printf("master %s removed from the raft configuration\n", pos[0])
		return nil
	}
	return fmt.Errorf("unknown raft subcommand %q (want peers, add, remove, transfer-leader or health)", args[0])
}
