package main

import (
	"flag"

	"github.com/agora-sched/agora/master"
)

// limitFlags are the masters' limits (master.Limits): -1 means no limit,
// 0 the default.
type limitFlags struct{ l master.Limits }

func (f *limitFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.l.MaxRequestBytes, "max-request-bytes", master.DefaultMaxRequestBytes, "largest request message in bytes, any service (-1: no limit)")
	fs.IntVar(&f.l.MaxOperationsPerAccept, "max-accept-operations", master.DefaultMaxOperationsPerAccept, "most operations in one Accept (-1: no limit)")
	fs.IntVar(&f.l.MaxLaunchesPerAccept, "max-accept-launches", master.DefaultMaxLaunchesPerAccept, "most tasks launched by one Accept (-1: no limit)")
	fs.IntVar(&f.l.MaxTasksPerFramework, "max-framework-tasks", master.DefaultMaxTasksPerFramework, "most non-terminal tasks per framework (-1: no limit)")
	fs.IntVar(&f.l.MaxFrameworksPerPrincipal, "max-frameworks-per-principal", master.DefaultMaxFrameworksPerPrincipal, "most frameworks (not torn down) per principal (-1: no limit)")
	fs.Float64Var(&f.l.SubscribeRate, "subscribe-rate", master.DefaultSubscribeRate, "Subscribe calls per second per principal, on the leader (-1: no limit)")
	fs.IntVar(&f.l.SubscribeBurst, "subscribe-burst", master.DefaultSubscribeBurst, "burst of Subscribe calls per principal")
	fs.Float64Var(&f.l.CallRate, "call-rate", master.DefaultCallRate, "other SchedulerService calls per second per principal, on the leader (-1: no limit)")
	fs.IntVar(&f.l.CallBurst, "call-burst", master.DefaultCallBurst, "burst of SchedulerService calls per principal")
}

func (f *limitFlags) apply(c *master.Config) { c.Limits = f.l }
