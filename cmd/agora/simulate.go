package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/simagent"
)

// simulateFlags are the flags of `agora agent --simulate N`.
type simulateFlags struct {
	count        int
	taskDuration time.Duration
	masters      string
	cpuProfile   string
	nice         int
}

func (s *simulateFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&s.count, "simulate", 0, "simulate N agents in this process (no processes, no gossip; see package simagent); --id is their id prefix, --masters the masters to register with")
	fs.DurationVar(&s.taskDuration, "simulate-task-duration", 0, "with --simulate: report each task FINISHED this long after RUNNING (0: run until killed)")
	fs.StringVar(&s.masters, "masters", "", "with --simulate: comma-separated master URLs (default $AGORA_ADDR or http://127.0.0.1:7100)")
	fs.IntVar(&s.nice, "simulate-nice", 10, "with --simulate: run at this niceness (Linux), so that masters on the same machine run first; 0 keeps the priority")
	fs.StringVar(&s.cpuProfile, "simulate-cpuprofile", "", "with --simulate: write a CPU profile (pprof) of the simulator to this file until it stops")
}

// runSimulatedAgents runs `agora agent --simulate N`.
func runSimulatedAgents(ctx context.Context, sf simulateFlags, lf logFlags, prefix, res, cluster string, decommission bool, sec securityFlags) error {
	log, err := lf.logger()
	if err != nil {
		return err
	}
	if b, _, err := sec.load(); err != nil {
		return err
	} else if b != nil {
		return errors.New("--simulate does not support TLS yet")
	}
	if res == "" {
		res = "cpus:8;mem:16384;disk:100000"
	}
	r, err := resources.Parse(res)
	if err != nil {
		return fmt.Errorf("--resources: %w", err)
	}
	masters := sf.masters
	if masters == "" {
		var cf clientFlags
		cf.register(flag.NewFlagSet("", flag.ContinueOnError), false)
		masters = cf.addr
	}
	if prefix == "" {
		prefix = "sim-"
	}
	lessGC()
	if err := yieldCPU(sf.nice); err != nil {
		return fmt.Errorf("--simulate-nice: %w", err)
	}
	sim, err := simagent.New(simagent.Config{Masters: splitList(masters), Count: sf.count, IDPrefix: prefix, Resources: r,
		TaskDuration: sf.taskDuration, Cluster: cluster, Version: version, Decommission: decommission, Logger: log})
	if err != nil {
		return err
	}
	if sf.cpuProfile != "" {
		pf, err := os.Create(sf.cpuProfile)
		if err != nil {
			return fmt.Errorf("--simulate-cpuprofile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("--simulate-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	log.Info("simulated agents starting", "count", sf.count, "prefix", prefix, "resources", r.String())
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				st := sim.Stats()
				log.Info("simulated agents", "registered", st.Registered, "launched", st.Launched, "running", st.Running, "finished", st.Finished, "dropped", st.Dropped)
			}
		}
	}()
	err = sim.Run(ctx)
	close(stop)
	return err
}

// lessGC makes a load generator (the simulated agents, the benchmark's
// frameworks) collect garbage a quarter as often as Go's default, unless
// GOGC says otherwise: they stand in for other machines, and on the one
// machine a benchmark runs on, their collections took CPU from the masters
// being measured (~14% of the simulator's CPU at 10,000 agents). Their heap
// is small beside the RAM this costs.
func lessGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}
