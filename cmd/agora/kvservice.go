package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/agora-sched/agora/examples/kvservice"
)

// runKVService runs one pod of the replicated key-value store; its
// configuration comes from the KV_* environment variables the service
// scheduler sets, and flags override them (see examples/kvservice/doc.go).
func runKVService(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kvservice", flag.ContinueOnError)
	var lf logFlags
	lf.register(fs)
	index := fs.String("index", os.Getenv(kvservice.EnvIndex), "this pod's index, from 0; pod 0 is the primary (default $"+kvservice.EnvIndex+")")
	listen := fs.String("listen", os.Getenv(kvservice.EnvListen), "host:port to serve HTTP on (default $"+kvservice.EnvListen+")")
	data := fs.String("data", os.Getenv(kvservice.EnvData), "data directory, the pod's persistent volume (default $"+kvservice.EnvData+")")
	peers := fs.String("peers", os.Getenv(kvservice.EnvPeers), "every pod as index=host:port,... this one included (default $"+kvservice.EnvPeers+")")
	writeTimeout := fs.Duration("write-timeout", kvservice.DefaultWriteTimeout, "how long a write waits for a quorum before 503")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *index == "" || *listen == "" || *data == "" || *peers == "" {
		return fmt.Errorf("--index, --listen, --data and --peers (or $%s, $%s, $%s, $%s) are required",
			kvservice.EnvIndex, kvservice.EnvListen, kvservice.EnvData, kvservice.EnvPeers)
	}
	idx, err := strconv.Atoi(*index)
	if err != nil {
		return fmt.Errorf("index %q: not an integer", *index)
	}
	p, err := kvservice.ParsePeers(*peers)
	if err != nil {
		return err
	}
	log, err := lf.logger()
	if err != nil {
		return err
	}
	return kvservice.Run(ctx, kvservice.Config{Index: idx, Listen: *listen, DataDir: *data, Peers: p,
		WriteTimeout: *writeTimeout, Logger: log})
}
