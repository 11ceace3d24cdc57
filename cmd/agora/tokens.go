package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/agora-sched/agora/auth"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
)

func init() {
	commands["auth"] = command{"bearer tokens: auth token (mint one and its hash), auth hash (hash a token)", runAuth}
}

// masterAuthFlags are a master's --auth-file, --acl-file and --audit-log.
type masterAuthFlags struct {
	authFile, aclFile, auditLog string
}

func (f *masterAuthFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.authFile, "auth-file", "", "JSON file mapping token hashes and certificate names to principals; turns on authentication (see SECURITY.md)")
	fs.StringVar(&f.aclFile, "acl-file", "", "JSON file of per-principal permissions; without it every authenticated caller may do everything (see SECURITY.md)")
	fs.StringVar(&f.auditLog, "audit-log", "", "append every write and every refused call to this file as JSON lines")
}

// apply loads the files into cfg.
func (f *masterAuthFlags) apply(cfg *master.Config) error {
	if f.authFile != "" {
		a, err := auth.LoadAuthFile(f.authFile)
		if err != nil {
			return err
		}
		cfg.Auth = a
	}
	if f.aclFile != "" {
		if f.authFile == "" {
			return fmt.Errorf("--acl-file needs --auth-file")
		}
		a, err := auth.LoadACLFile(f.aclFile)
		if err != nil {
			return err
		}
		cfg.ACL = a
	}
	cfg.AuditLog = f.auditLog
	return nil
}

// tokenFlag is --token (env AGORA_TOKEN) of clients and agents.
func tokenFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "token", client.TokenFromEnv(), "bearer token for masters that run with an auth file (env "+client.EnvToken+")")
}

func runAuth(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: agora auth token [--principal P] [--agent ID] | agora auth hash [TOKEN] (reads stdin without TOKEN)")
		return errUsage
	}
	switch args[0] {
	case "token":
		fs := flag.NewFlagSet("auth token", flag.ContinueOnError)
		principal := fs.String("principal", "", "principal name for the printed auth-file entry")
		agentID := fs.String("agent", "", "bind the principal to this agent id")
		if _, err := parseArgs(fs, args[1:]); err != nil {
			return err
		}
		tok, err := auth.NewToken()
		if err != nil {
			return err
		}
		fmt.Printf("token:  %s\nsha256: %s\n", tok, auth.HashToken(tok))
		if *principal != "" {
			e, err := json.Marshal(auth.Entry{Name: *principal, Agent: *agentID, TokenSHA256: []string{auth.HashToken(tok)}})
			if err != nil {
				return err
			}
			fmt.Printf("auth-file entry: %s\n", e)
		}
		return nil
	case "hash":
		var tok string
		if len(args) > 1 {
			tok = args[1]
		} else {
			line, err := bufio.NewReader(os.Stdin).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read token from stdin: %w", err)
			}
			tok = line
		}
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return fmt.Errorf("empty token")
		}
		fmt.Println(auth.HashToken(tok))
		return nil
	}
	return fmt.Errorf("unknown auth command %q (want token or hash)", args[0])
}
