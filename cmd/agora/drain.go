package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// parseDeadline reads --deadline: a duration from now ("10m", "90s") or an
// RFC 3339 time. The masters judge whether it is in the past.
func parseDeadline(s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return timestamppb.New(now.Add(d)), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("--deadline %q: want a duration (10m) or an RFC 3339 time (2030-01-02T15:04:05Z)", s)
	}
	return timestamppb.New(t), nil
}

// runDrain drains an agent: `agora drain AGENT [--deadline D] [--json]`.
func runDrain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	deadline := fs.String("deadline", "", "kill the tasks still there after this long (10m) or at this RFC 3339 time; none: never")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: agora drain AGENT [--deadline D] [--json]")
	}
	dl, err := parseDeadline(*deadline, time.Now())
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{AgentId: pos[0], Deadline: dl}))
	if err != nil {
		return cliError(err)
	}
	a := resp.Msg.GetAgent()
	if cf.json {
		return printJSON(os.Stdout, map[string]any{"id": a.GetId(), "state": agentState(a.GetState()), "drain": drainJSON(a.GetDrain()), "index": resp.Msg.GetIndex()})
	}
	fmt.Printf("agent %s %s (%s)\n", a.GetId(), agentState(a.GetState()), drainString(a.GetDrain()))
	return nil
}

// runUndrain ends an agent's drain: `agora undrain AGENT`.
func runUndrain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("undrain", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("usage: agora undrain AGENT")
	}
	resp, err := cf.client().Operator.UndrainAgent(ctx, connect.NewRequest(&agorav1.UndrainAgentRequest{AgentId: pos[0]}))
	if err != nil {
		return cliError(err)
	}
	a := resp.Msg.GetAgent()
	if cf.json {
		return printJSON(os.Stdout, map[string]any{"id": a.GetId(), "state": agentState(a.GetState()), "index": resp.Msg.GetIndex()})
	}
	fmt.Printf("agent %s %s\n", a.GetId(), agentState(a.GetState()))
	return nil
}

// drainJSON is an agent's drain for --json (nil when not drained).
func drainJSON(d *agorav1.AgentDrain) map[string]any {
	if d == nil {
		return nil
	}
	answers := make([]map[string]any, 0, len(d.GetAnswers()))
	for _, a := range d.GetAnswers() {
		answers = append(answers, map[string]any{"framework_id": a.GetFrameworkId(), "accepted": a.GetAccepted(), "answered_at": tsString(a.GetAnsweredAt())})
	}
	return map[string]any{"started_at": tsString(d.GetStartedAt()), "deadline": tsString(d.GetDeadline()),
		"deadline_passed": d.GetDeadlinePassed(), "answers": answers}
}

// drainString is an agent's drain in one short phrase: "deadline
// 2030-01-02T15:04:05Z, 1 accepted, 0 declined" ("-" when not drained).
func drainString(d *agorav1.AgentDrain) string {
	if d == nil {
		return "-"
	}
	var parts []string
	switch {
	case d.GetDeadline() == nil:
		parts = append(parts, "no deadline")
	case d.GetDeadlinePassed():
		parts = append(parts, "deadline "+tsString(d.GetDeadline())+" passed")
	default:
		parts = append(parts, "deadline "+tsString(d.GetDeadline()))
	}
	acc, dec := 0, 0
	for _, a := range d.GetAnswers() {
		if a.GetAccepted() {
			acc++
		} else {
			dec++
		}
	}
	parts = append(parts, fmt.Sprintf("%d accepted, %d declined", acc, dec))
	return strings.Join(parts, ", ")
}
