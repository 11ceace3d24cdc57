package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

const serviceUsage = `usage: agora service run FILE
       agora service list [--json]
       agora service status NAME [--json]
       agora service scale NAME N [--pod TYPE] [--purge]
       agora service update NAME FILE
       agora service replace NAME POD [--force]
       agora service remove NAME [--purge]
The spec format is docs/service-spec.md.`

// runService is `agora service`: the stateful-service scheduler's CLI.
func runService(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, serviceUsage)
		return errUsage
	}
	sub, ok := map[string]func(context.Context, []string) error{
		"run": runServiceRun, "list": runServiceList, "status": runServiceStatus, "scale": runServiceScale,
		"update": runServiceUpdate, "replace": runServiceReplace, "remove": runServiceRemove,
	}[args[0]]
	if !ok {
		return fmt.Errorf("unknown service subcommand %q (want run, list, status, scale, update, replace or remove)", args[0])
	}
	return sub(ctx, args[1:])
}

// serviceFlags parses a subcommand's flags and checks its positional count.
func serviceFlags(name string, args []string, want int, withJSON bool, extra func(*flag.FlagSet)) (*clientFlags, []string, error) {
	fs := flag.NewFlagSet("service "+name, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, withJSON)
	if extra != nil {
		extra(fs)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) != want {
		return nil, nil, fmt.Errorf("service %s: want %d arguments, got %d (see agora service)", name, want, len(pos))
	}
	return &cf, pos, nil
}

// readSpec reads and checks a spec file; a bad spec fails here, before
// any call.
func readSpec(path string) ([]byte, *service.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read spec: %w", err)
	}
	spec, err := service.Parse(b)
	if err != nil {
		return nil, nil, err
	}
	return b, spec, nil
}

func runServiceRun(ctx context.Context, args []string) error {
	cf, pos, err := serviceFlags("run", args, 1, false, nil)
	if err != nil {
		return err
	}
	b, _, err := readSpec(pos[0])
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: b}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("service %s running as framework %s (index %d)\n", resp.Msg.GetName(), resp.Msg.GetFrameworkId(), resp.Msg.GetIndex())
	return nil
}

func runServiceList(ctx context.Context, args []string) error {
	cf, _, err := serviceFlags("list", args, 0, true, nil)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ListServices(ctx, connect.NewRequest(&agorav1.ListServicesRequest{Read: cf.read()}))
	if err != nil {
		return cliError(err)
	}
	var all []service.Status
	for _, v := range resp.Msg.GetServices() {
		var st service.Status
		if err := json.Unmarshal(v.GetStatus(), &st); err != nil {
			return fmt.Errorf("service %s: bad status: %w", v.GetName(), err)
		}
		all = append(all, st)
	}
	if cf.json {
		if all == nil {
			all = []service.Status{}
		}
		return printJSON(os.Stdout, all)
	}
	tw := newTable(os.Stdout, "NAME", "ROLE", "PODS", "READY", "PLAN", "STEP")
	for _, st := range all {
		ready := 0
		for _, p := range st.Pods {
			if p.Ready {
				ready++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", st.Name, st.Role, len(st.Pods), ready, st.Plan.State, orDash(st.Plan.Step))
	}
	return tw.Flush()
}

func runServiceStatus(ctx context.Context, args []string) error {
	cf, pos, err := serviceFlags("status", args, 1, true, nil)
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.GetService(ctx, connect.NewRequest(&agorav1.GetServiceRequest{Read: cf.read(), Name: pos[0]}))
	if err != nil {
		return cliError(err)
	}
	var st service.Status
	if err := json.Unmarshal(resp.Msg.GetService().GetStatus(), &st); err != nil {
		return fmt.Errorf("service %s: bad status: %w", pos[0], err)
	}
	if cf.json {
		return printJSON(os.Stdout, st)
	}
	fmt.Printf("service %s (role %s): plan %s %s\n", st.Name, st.Role, st.Plan.State, st.Plan.Step)
	tw := newTable(os.Stdout, "POD", "STATE", "READY", "AGENT", "ADDRESS", "TASK", "VOLUME")
	for _, p := range st.Pods {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\n", p.Name, p.State, p.Ready, orDash(p.AgentID), orDash(p.Address), orDash(p.TaskID), orDash(p.VolumeID))
	}
	return tw.Flush()
}

func runServiceScale(ctx context.Context, args []string) error {
	var purge bool
	var pod string
	cf, pos, err := serviceFlags("scale", args, 2, false, func(fs *flag.FlagSet) {
		fs.BoolVar(&purge, "purge", false, "release the reservations and volumes of pods scaled away")
		fs.StringVar(&pod, "pod", "", "the pod type to scale (default: the service's only one)")
	})
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(pos[1], 10, 64)
	if err != nil {
		return fmt.Errorf("service scale: count %q is not an integer", pos[1])
	}
	if n < 0 {
		return fmt.Errorf("service scale: count %d is negative", n)
	}
	resp, err := cf.client().Operator.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: pos[0], PodType: pod, Count: n, Purge: purge}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("service %s scaling to %d (index %d)\n", pos[0], n, resp.Msg.GetIndex())
	return nil
}

func runServiceUpdate(ctx context.Context, args []string) error {
	cf, pos, err := serviceFlags("update", args, 2, false, nil)
	if err != nil {
		return err
	}
	b, _, err := readSpec(pos[1])
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.UpdateService(ctx, connect.NewRequest(&agorav1.UpdateServiceRequest{Name: pos[0], Spec: b}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("service %s updating (index %d); roll back with agora service update %s OLD-FILE\n", pos[0], resp.Msg.GetIndex(), pos[0])
	return nil
}

func runServiceReplace(ctx context.Context, args []string) error {
	var force bool
	cf, pos, err := serviceFlags("replace", args, 2, false, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "replace the pod even though its agent is active (its task is killed first)")
	})
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.ReplaceServicePod(ctx, connect.NewRequest(&agorav1.ReplaceServicePodRequest{Name: pos[0], Pod: pos[1], Force: force}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("pod %s of service %s replaced (index %d)\n", pos[1], pos[0], resp.Msg.GetIndex())
	return nil
}

func runServiceRemove(ctx context.Context, args []string) error {
	var purge bool
	cf, pos, err := serviceFlags("remove", args, 1, false, func(fs *flag.FlagSet) {
		fs.BoolVar(&purge, "purge", false, "also release every reservation and volume")
	})
	if err != nil {
		return err
	}
	resp, err := cf.client().Operator.RemoveService(ctx, connect.NewRequest(&agorav1.RemoveServiceRequest{Name: pos[0], Purge: purge}))
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("service %s removing (index %d)\n", pos[0], resp.Msg.GetIndex())
	return nil
}
