// Package devcluster runs a cluster of agora masters in one process on
// loopback, for `agora dev`, tests, benchmarks and chaos runs.
//
// Driving it:
//
//	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3})
//	defer c.Stop()
//	leader, err := c.WaitLeader(ctx)
//	cl := client.New(c.Addrs()[0])     // any master; redirects are followed
//	c.Kill(i); c.Restart(ctx, i)       // crash and restart from the data dir
//
// Master i (0-based) has id "m<i+1>" and data dir DataDir/m<i+1>. With
// BasePort > 0 it serves HTTP on BasePort+i, Raft on BasePort+100+i and
// gossip on BasePort+200+i; with BasePort 0 free ports are picked once and
// kept across restarts (Raft remembers addresses).
package devcluster
