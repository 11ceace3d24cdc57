package main

import (
	"flag"

	"github.com/agora-sched/agora/flagconfig"
)

// serverConfig is where the server commands (master, agent, dev) read
// flags from besides the command line: --config FILE (TOML, one key per
// flag) and AGORA_<FLAG> variables. It covers every flag the commands
// register, including those added later.
var serverConfig = flagconfig.Options{EnvPrefix: "AGORA_", ConfigFlag: "config"}

// serverTopics group the server commands' --help. A flag is listed under
// the topic with its longest match (a name, or a prefix ending in '-');
// a flag that matches none appears under "Other".
var serverTopics = []flagconfig.Topic{
	{Title: "Identity and storage", Match: []string{"id", "data-dir", "cluster", "config", "decommission", "agents", "demo"}},
	{Title: "Network", Match: []string{"http", "raft", "gossip", "join", "bootstrap-expect", "gossip-profile", "base-port", "advertise", "advertise-"}},
	{Title: "Resources", Match: []string{"resources", "attributes"}},
	{Title: "Raft", Match: []string{"raft-", "autopilot-", "snapshot-"}},
	{Title: "Agents and offers", Match: []string{"agent-", "offer-", "kill-"}},
	{Title: "Security", Match: []string{"tls-", "gossip-key", "gossip-keyring", "token", "auth-", "acl-", "audit-"}},
	{Title: "Limits", Match: []string{"limit-", "max-", "rate-", "call-", "subscribe-"}},
	{Title: "Observability", Match: []string{"log-", "metrics-", "ui", "ui-", "pprof"}},
}

// parseServerArgs parses a server command's flags: the command line, then
// the environment, then the --config file (registered here). -h prints the
// flags grouped by topic.
func parseServerArgs(fs *flag.FlagSet, args []string, synopsis string) ([]string, error) {
	fs.String(serverConfig.ConfigFlag, "", "read flags from this TOML file (keys are flag names)")
	flagconfig.SetUsage(fs, synopsis, serverTopics, serverConfig)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if _, err := flagconfig.Apply(fs, serverConfig); err != nil {
		return nil, err
	}
	return pos, nil
}
