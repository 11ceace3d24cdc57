package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// parseArgs parses flags that may be interleaved with positional arguments
// ("role set NAME --weight 3" as well as "role set --weight 3 NAME").
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errUsage
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// clientFlags are the flags every client command takes.
type clientFlags struct {
	addr    string
	timeout time.Duration
	json    bool
	stale   bool
	tls     tlsFlags
	token   string
}

func (c *clientFlags) register(fs *flag.FlagSet, withJSON bool) {
	def := os.Getenv("AGORA_ADDR")
	if def == "" {
		def = "http://127.0.0.1:7100"
	}
	fs.StringVar(&c.addr, "addr", def, "any master's address, or several comma-separated (env AGORA_ADDR)")
	fs.DurationVar(&c.timeout, "timeout", client.DefaultCallTimeout, "give up a call after this long, all retries included")
	c.tls.register(fs, true)
	tokenFlag(fs, &c.token)
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print JSON for scripts")
		fs.BoolVar(&c.stale, "stale", false, "answer from the contacted master's local state (no leader check)")
	}
}

// client returns a client for the masters of --addr. It follows
// redirects, passes over masters that do not answer and gives up after
// --timeout.
func (c *clientFlags) client() *client.Client {
	lastAddr = c.addr
	return client.New(c.addr, append(c.tls.clientOptions(), client.WithCallTimeout(c.timeout), client.WithToken(c.token))...)
}

// masters lists the addresses of --addr.
func (c *clientFlags) masters() []string { return strings.Split(c.addr, ",") }

func (c *clientFlags) read() *agorav1.ReadOptions { return &agorav1.ReadOptions{Stale: c.stale} }

// cliError turns a Connect error into a one-line message.
func cliError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg := ce.Message()
		_, addr, ok := client.LeaderFromError(err)
		if ok && addr != "" {
			msg += " (leader: " + addr + ")"
		}
		if hint := nextStep(ce.Code(), msg, ok && addr != ""); hint != "" {
			msg += "; " + hint
		}
		return fmt.Errorf("%s: %s", ce.Code(), msg)
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// enumName strips a proto enum's type prefix: TASK_STATE_RUNNING -> RUNNING.
func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func taskState(s agorav1.TaskState) string   { return enumName(s.String(), "TASK_STATE_") }
func agentState(s agorav1.AgentState) string { return enumName(s.String(), "AGENT_STATE_") }
func frameworkState(s agorav1.FrameworkState) string {
	return enumName(s.String(), "FRAMEWORK_STATE_")
}

// poolsString formats resources grouped by role: "cpus:1;mem:128 web(cpus:1)".
func poolsString(rs []*agorav1.Resource) string {
	pools, err := resourcepb.FromProto(rs)
	if err != nil {
		return "?"
	}
	roles := make([]string, 0, len(pools))
	for r := range pools {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	var parts []string
	for _, r := range roles {
		s := pools[r].String()
		if s == "" {
			continue
		}
		if r == "" {
			parts = append(parts, s)
		} else {
			parts = append(parts, r+"("+s+")")
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// scalarMap turns scalar resources into a JSON-friendly map.
func scalarMap(rs []*agorav1.Resource) map[string]float64 {
	m := map[string]float64{}
	for _, r := range rs {
		if len(r.Ranges) == 0 && len(r.Set) == 0 {
			m[r.Name] += r.Scalar
		}
	}
	return m
}

// parseScalarSpec parses 'cpus:2;mem:1024' into resources for quota.
func parseScalarSpec(spec string) ([]*agorav1.Resource, error) {
	if spec == "" {
		return nil, nil
	}
	r, err := resources.Parse(spec)
	if err != nil {
		return nil, err
	}
	return resourcepb.ToProto("", r), nil
}

func tsString(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
