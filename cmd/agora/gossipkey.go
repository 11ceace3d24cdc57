package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// gossipKeyFlag is --gossip-key (env AGORA_GOSSIP_KEY) on masters and
// agents.
type gossipKeyFlag struct{ key string }

func (g *gossipKeyFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&g.key, "gossip-key", os.Getenv("AGORA_GOSSIP_KEY"), "gossip encryption key, base64 of 16, 24 or 32 bytes (agora gossip keygen); every member needs it (env AGORA_GOSSIP_KEY)")
}

// keyring returns the keyring for gossip.Config; nil when no key is set.
func (g *gossipKeyFlag) keyring() ([][]byte, error) {
	if g.key == "" {
		return nil, nil
	}
	k, err := gossip.ParseKey(g.key)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key: %w", err)
	}
	return [][]byte{k}, nil
}

var gossipActions = map[string]agorav1.GossipKeyringAction{
	"list":    agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST,
	"install": agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_INSTALL,
	"use":     agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_USE,
	"remove":  agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_REMOVE,
}

func runGossip(ctx context.Context, args []string) error {
	usage := "usage: agora gossip keygen | agora gossip key list | agora gossip key install|use|remove KEY"
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "keygen":
		k, err := gossip.NewKey()
		if err != nil {
			return err
		}
		fmt.Println(k)
		return nil
	case "key":
	default:
		return fmt.Errorf("unknown gossip command %q (want keygen or key)", args[0])
	}
	fs := flag.NewFlagSet("gossip key", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs, true)
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	action, ok := gossipActions[pos[0]]
	if !ok {
		return fmt.Errorf("unknown gossip key action %q (want install, use, remove or list)", pos[0])
	}
	req := &agorav1.GossipKeyringRequest{Action: action}
	if action != agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST {
		if len(pos) != 2 {
			return fmt.Errorf("gossip key %s needs one KEY", pos[0])
		}
		if _, err := gossip.ParseKey(pos[1]); err != nil {
			return err
		}
		req.Key = pos[1]
	}
	resp, err := cf.client().Operator.GossipKeyring(ctx, connect.NewRequest(req))
	if err != nil {
		return cliError(err)
	}
	r := resp.Msg
	if cf.json {
		return printJSON(os.Stdout, r)
	}
	fmt.Printf("%d of %d members answered, %d errors\n", r.GetResponses(), r.GetMembers(), r.GetErrors())
	if action == agorav1.GossipKeyringAction_GOSSIP_KEYRING_ACTION_LIST {
		keys := make([]string, 0, len(r.GetKeys()))
		for k := range r.GetKeys() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("%s  held by %d, primary on %d\n", k, r.GetKeys()[k], r.GetPrimaryKeys()[k])
		}
	}
	return nil
}
