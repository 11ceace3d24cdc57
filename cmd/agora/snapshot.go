package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/backup"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

const snapshotUsage = `usage: agora snapshot save FILE       (a consistent snapshot from the leader)
       agora snapshot restore FILE    (replace the cluster's state with FILE)
       agora snapshot inspect FILE [--json]`

// snapshotTimeout is the default --timeout of the snapshot commands: a
// large state takes longer than an ordinary call.
const snapshotTimeout = 10 * time.Minute

// snapshotAttempts bounds the redirects a snapshot command follows.
const snapshotAttempts = 5

func runSnapshot(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, snapshotUsage)
		return errUsage
	}
	switch args[0] {
	case "save":
		return runSnapshotSave(ctx, args[1:])
	case "restore":
		return runSnapshotRestore(ctx, args[1:])
	case "inspect":
		return runSnapshotInspect(args[1:])
	}
	return fmt.Errorf("unknown snapshot subcommand %q (want save, restore or inspect)", args[0])
}

// snapshotFlags parses a snapshot command's flags and its one FILE.
func snapshotFlags(name string, args []string, withJSON bool) (clientFlags, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, withJSON)
	if f := fs.Lookup("timeout"); f != nil {
		f.DefValue = snapshotTimeout.String()
		_ = f.Value.Set(f.DefValue)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cf, "", err
	}
	if len(pos) != 1 {
		return cf, "", fmt.Errorf("want exactly one FILE, got %d arguments", len(pos))
	}
	return cf, pos[0], nil
}

// leaderClient returns a client whose preferred master is the leader (a
// linearizable read follows redirects there): streams go to the
// preferred master and are not retried by the client.
func leaderClient(ctx context.Context, cf clientFlags) (*client.Client, error) {
	cl := client.New(cf.addr, append(cf.tls.clientOptions(), client.WithCallTimeout(cf.timeout), client.WithStreamOpenTimeout(cf.timeout))...)
	if _, err := cl.Operator.ListPeers(ctx, connect.NewRequest(&agorav1.ListPeersRequest{})); err != nil {
		return nil, err
	}
	return cl, nil
}

// retryStream runs one attempt of a stream call until it succeeds, fails
// for good or attempts run out; a redirect or an Unavailable answer
// (leadership moved) is tried again at the new preferred master.
func retryStream(ctx context.Context, attempt func() error) error {
	var err error
	for i := range snapshotAttempts {
		if err = attempt(); err == nil {
			return nil
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || i == snapshotAttempts-1 {
			return err
		}
		t := time.NewTimer(time.Duration(100*(i+1)) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return err
}

func runSnapshotSave(ctx context.Context, args []string) error {
	cf, path, err := snapshotFlags("snapshot save", args, false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	cl, err := leaderClient(ctx, cf)
	if err != nil {
		return cliError(err)
	}
	var h backup.Header
	err = retryStream(ctx, func() error {
		var err error
		h, err = backup.Save(ctx, cl.Operator, path)
		return err
	})
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("saved %s: raft index %d, term %d, %d bytes, sha256 %s\n", path, h.Index, h.Term, h.Size, h.SumHex())
	return nil
}

func runSnapshotRestore(ctx context.Context, args []string) error {
	cf, path, err := snapshotFlags("snapshot restore", args, false)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// Refuse a bad file before sending it (the leader checks again).
	h, _, err := backup.VerifyFile(f)
	if err != nil {
		return fmt.Errorf("%s: %w (nothing was changed)", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	cl, err := leaderClient(ctx, cf)
	if err != nil {
		return cliError(err)
	}
	var resp *agorav1.RestoreSnapshotResponse
	err = retryStream(ctx, func() error {
		var err error
		resp, err = backup.Send(ctx, cl.Operator, f)
		return err
	})
	if err != nil {
		return cliError(err)
	}
	fmt.Printf("restored %s (raft index %d, term %d, %d bytes); the cluster's applied index is now %d\n", path, h.Index, h.Term, h.Size, resp.AppliedIndex)
	return nil
}

func runSnapshotInspect(args []string) error {
	fs := flag.NewFlagSet("snapshot inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("want exactly one FILE, got %d arguments", len(pos))
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	h, body, err := backup.VerifyFile(f)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	c, _, err := backup.Inspect(body)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		return printJSON(os.Stdout, map[string]any{
			"format": h.Format, "raft_index": h.Index, "raft_term": h.Term, "size": h.Size, "sha256": h.SumHex(),
			"agora_version": h.AgoraVersion, "counts": c,
		})
	}
	fmt.Printf("file:         %s (format %d, agora %s)\n", pos[0], h.Format, h.AgoraVersion)
	fmt.Printf("raft:         index %d, term %d\n", h.Index, h.Term)
	fmt.Printf("body:         %d bytes, sha256 %s\n", h.Size, h.SumHex())
	for _, l := range c.Lines() {
		fmt.Println(l)
	}
	return nil
}
