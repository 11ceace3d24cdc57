package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

const raftUsage = `usage: agora raft peers [--json]
       agora raft add ID RAFT-ADDRESS      (joins as a non-voter; autopilot promotes it)
       agora raft remove ID                (refused for the leader and for a voter quorum needs)
       agora raft transfer-leader [ID]     (to ID, or to the most up-to-date voter)
       agora raft health [--json]          (autopilot's view)`

// runRaftMore runs the raft subcommands beyond peers and remove; ok is
// false for an unknown one.
func runRaftMore(ctx context.Context, sub string, args []string) (ok bool, err error) {
	switch sub {
	case "add":
		return true, runRaftAdd(ctx, args)
	case "transfer-leader", "transfer":
		return true, runRaftTransfer(ctx, args)
	case "health":
		return true, runRaftHealth(ctx, args)
	}
	return false, nil
}

func runRaftAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("raft add", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("want a master id and its raft address (host:port), got %d arguments", len(pos))
	}
	resp, err := cf.client().Operator.AddPeer(ctx, connect.NewRequest(&agorav1.AddPeerRequest{Id: pos[0], RaftAddress: pos[1]}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("master %s added as a non-voter at index %d; autopilot promotes it once it is stable (see agora raft health)\n", pos[0], resp.Msg.Index)
	return nil
}

func runRaftTransfer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("raft transfer-leader", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("want at most one master id, got %d", len(pos))
	}
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	resp, err := cf.client().Operator.TransferLeader(ctx, connect.NewRequest(&agorav1.TransferLeaderRequest{Id: id}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("leader: %s\n", orDash(resp.Msg.LeaderId))
	return nil
}

type raftServerJSON struct {
	ID          string `json:"id"`
	RaftAddress string `json:"raft_address"`
	NodeStatus  string `json:"node_status"`
	RaftState   string `json:"raft_state"`
	Healthy     bool   `json:"healthy"`
	StableSince string `json:"stable_since,omitempty"`
	LastContact int64  `json:"last_contact_ms"`
	LastTerm    uint64 `json:"last_term"`
	LastIndex   uint64 `json:"last_index"`
	FailedFor   int64  `json:"failed_for_ms,omitempty"`
}

func runRaftHealth(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("raft health", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	resp, err := cf.client().Operator.RaftHealth(ctx, connect.NewRequest(&agorav1.RaftHealthRequest{}))
	if err != nil {
		return cliError(err)
	}
	h := resp.Msg
	servers := make([]raftServerJSON, 0, len(h.Servers))
	for _, s := range h.Servers {
		v := raftServerJSON{ID: s.Id, RaftAddress: s.RaftAddress, NodeStatus: s.NodeStatus, RaftState: s.RaftState, Healthy: s.Healthy,
			LastContact: s.LastContactMs, LastTerm: s.LastTerm, LastIndex: s.LastIndex, FailedFor: s.FailedForMs}
		if s.StableSince != nil {
			v.StableSince = s.StableSince.AsTime().UTC().Format(time.RFC3339)
		}
		servers = append(servers, v)
	}
	if cf.json {
		return printJSON(os.Stdout, map[string]any{
			"healthy": h.Healthy, "failure_tolerance": h.FailureTolerance, "leader": h.LeaderId, "voters": nonNilStrings(h.Voters),
			"servers": servers, "stabilization_ms": h.StabilizationMs, "dead_server_cleanup_ms": h.DeadServerCleanupMs, "min_quorum": h.MinQuorum,
		})
	}
	fmt.Printf("healthy:            %v\n", h.Healthy)
	fmt.Printf("failure tolerance:  %d\n", h.FailureTolerance)
	fmt.Printf("leader:             %s\n", orDash(h.LeaderId))
	fmt.Printf("voters:             %s\n", strings.Join(h.Voters, ", "))
	cleanup := "never"
	if h.DeadServerCleanupMs > 0 {
		cleanup = (time.Duration(h.DeadServerCleanupMs) * time.Millisecond).String()
	}
	fmt.Printf("autopilot:          stabilization %s, dead server cleanup %s, min quorum %d\n\n",
		time.Duration(h.StabilizationMs)*time.Millisecond, cleanup, h.MinQuorum)
	tw := newTable(os.Stdout, "ID", "RAFT", "GOSSIP", "STATE", "HEALTHY", "LAST-CONTACT", "TERM", "INDEX", "STABLE-SINCE")
	for _, s := range servers {
		contact := "never"
		if s.LastContact >= 0 {
			contact = (time.Duration(s.LastContact) * time.Millisecond).String()
		}
		gossip := s.NodeStatus
		if s.FailedFor > 0 {
			gossip += fmt.Sprintf(" (%s)", (time.Duration(s.FailedFor) * time.Millisecond).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%d\t%d\t%s\n", s.ID, s.RaftAddress, gossip, s.RaftState, s.Healthy, contact, s.LastTerm, s.LastIndex, orDash(s.StableSince))
	}
	return tw.Flush()
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// autopilotFlags are the master's online-membership flags (master.Config's
// Autopilot* fields).
type autopilotFlags struct {
	stabilization time.Duration
	deadCleanup   time.Duration
	lastContact   time.Duration
	trailingLogs  uint64
	minQuorum     uint
	interval      time.Duration
}

func (a *autopilotFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&a.stabilization, "autopilot-stabilization", 10*time.Second, "a new master is promoted from non-voter to voter once healthy (alive, heard from, caught up) this long")
	fs.DurationVar(&a.deadCleanup, "autopilot-dead-server-cleanup", 5*time.Minute, "a master failed or gone in gossip this long is removed from the raft configuration while quorum allows (0: never)")
	fs.DurationVar(&a.lastContact, "autopilot-last-contact-threshold", 2*time.Second, "a master not heard from by the leader for longer is unhealthy")
	fs.Uint64Var(&a.trailingLogs, "autopilot-max-trailing-logs", 500, "a master more raft entries behind the leader is unhealthy")
	fs.UintVar(&a.minQuorum, "autopilot-min-quorum", 0, "never remove a dead master when fewer voters would remain (0: only the majority rule)")
	fs.DurationVar(&a.interval, "autopilot-interval", 2*time.Second, "how often the leader's autopilot polls the masters and reconciles the raft configuration")
}

func (a *autopilotFlags) apply(c *master.Config) {
	c.AutopilotStabilization = a.stabilization
	c.AutopilotDeadServerCleanup = a.deadCleanup
	if a.deadCleanup == 0 {
		c.AutopilotDeadServerCleanup = -1
	}
	c.AutopilotLastContactThreshold = a.lastContact
	c.AutopilotMaxTrailingLogs = a.trailingLogs
	c.AutopilotMinQuorum = a.minQuorum
	c.AutopilotInterval = a.interval
}
