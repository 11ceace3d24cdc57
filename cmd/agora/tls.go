package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agora-sched/agora/rpc/client"
	"github.com/agora-sched/agora/tlsconf"
)

// The security commands register here, not in main.go's table, so that
// branches adding commands there merge without conflicts. Go runs a
// package's init functions in file-name order and main.go's, which makes
// the table, sorts first.
func init() {
	commands["tls"] = command{"development CA and certificates: tls create-ca, tls cert", runTLS}
	commands["gossip"] = command{"gossip encryption keys: gossip keygen, gossip key install|use|remove|list", runGossip}
}

// tlsFlags are --tls-ca, --tls-cert and --tls-key (env AGORA_TLS_CA,
// AGORA_TLS_CERT, AGORA_TLS_KEY) and, for clients, --tls-cluster.
type tlsFlags struct {
	files   tlsconf.Files
	cluster string
}

func (f *tlsFlags) register(fs *flag.FlagSet, withCluster bool) {
	env := tlsconf.FilesFromEnv()
	fs.StringVar(&f.files.CA, "tls-ca", env.CA, "CA certificate (PEM) that signs every master, agent and client; turns on mutual TLS (env "+tlsconf.EnvCA+")")
	fs.StringVar(&f.files.Cert, "tls-cert", env.Cert, "this process's certificate (PEM) (env "+tlsconf.EnvCert+")")
	fs.StringVar(&f.files.Key, "tls-key", env.Key, "this process's private key (PEM) (env "+tlsconf.EnvKey+")")
	if withCluster {
		def := os.Getenv("AGORA_CLUSTER")
		if def == "" {
			def = tlsconf.DefaultCluster
		}
		fs.StringVar(&f.cluster, "tls-cluster", def, "with TLS, the cluster whose master certificates to accept (env AGORA_CLUSTER)")
	}
}

// load reads the files; nil when TLS is off.
func (f *tlsFlags) load() (*tlsconf.Bundle, error) {
	b, err := f.files.Load()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return b, nil
}

// clientOptions is the client option for the masters when TLS is on. A
// client command has no error path before its first call, so bad files
// end the process here with the CLI's one-line error.
func (f *tlsFlags) clientOptions() []client.Option {
	b, err := f.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agora: %s\n", oneLine(err))
		os.Exit(1)
	}
	if b == nil {
		return nil
	}
	return []client.Option{client.WithTLS(b.ClientConfig(f.cluster))}
}

func runTLS(_ context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: agora tls create-ca --out DIR | agora tls cert --role master|agent|client --name N [--cluster C] [--hosts H,...] [--ca DIR] --out DIR")
		return errUsage
	}
	switch args[0] {
	case "create-ca":
		return runTLSCreateCA(args[1:])
	case "cert":
		return runTLSCert(args[1:])
	}
	return fmt.Errorf("unknown tls command %q (want create-ca or cert)", args[0])
}

func runTLSCreateCA(args []string) error {
	fs := flag.NewFlagSet("tls create-ca", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write ca.pem and ca-key.pem to (required)")
	name := fs.String("name", "agora CA", "the CA's common name")
	days := fs.Int("days", int(tlsconf.DefaultCAValidity/(24*time.Hour)), "validity in days")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	if *days <= 0 {
		return fmt.Errorf("--days must be positive")
	}
	ca, err := tlsconf.NewCA(*name, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := tlsconf.WriteCA(*out, ca); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(*out, tlsconf.CACertFile), filepath.Join(*out, tlsconf.CAKeyFile))
	return nil
}

func runTLSCert(args []string) error {
	fs := flag.NewFlagSet("tls cert", flag.ContinueOnError)
	role := fs.String("role", "", "master, agent or client (required)")
	name := fs.String("name", "", "the certificate's name: a master or agent id, a user (required); files are NAME.pem and NAME-key.pem")
	cluster := fs.String("cluster", tlsconf.DefaultCluster, "cluster name; the certificate is valid for ROLE.CLUSTER.agora")
	hosts := fs.String("hosts", "", "extra comma-separated DNS names or IPs the certificate is valid for")
	caDir := fs.String("ca", "", "directory holding ca.pem and ca-key.pem (default: --out)")
	out := fs.String("out", "", "directory to write the certificate and key to (required)")
	days := fs.Int("days", int(tlsconf.DefaultCertValidity/(24*time.Hour)), "validity in days")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if !tlsconf.ValidRole(*role) {
		return fmt.Errorf("--role %q: want master, agent or client", *role)
	}
	if *name == "" || *out == "" {
		return fmt.Errorf("--name and --out are required")
	}
	if *days <= 0 {
		return fmt.Errorf("--days must be positive")
	}
	if *caDir == "" {
		*caDir = *out
	}
	ca, err := tlsconf.LoadCA(*caDir)
	if err != nil {
		return err
	}
	nb := time.Now().Add(-time.Minute)
	cert, err := ca.Issue(tlsconf.Request{Role: *role, Name: *name, Cluster: *cluster, Hosts: splitList(*hosts),
		NotBefore: nb, NotAfter: nb.Add(time.Duration(*days) * 24 * time.Hour)})
	if err != nil {
		return err
	}
	certPath, keyPath, err := tlsconf.WriteCert(*out, *name, cert)
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s (valid for %s)\n", certPath, keyPath, tlsconf.ServerName(*role, *cluster))
	return nil
}

// securityFlags are the TLS files and the gossip key of a master or an
// agent.
type securityFlags struct {
	tls    tlsFlags
	gossip gossipKeyFlag
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	s.tls.register(fs, false)
	s.gossip.register(fs)
}

func (s *securityFlags) load() (*tlsconf.Bundle, [][]byte, error) {
	kr, err := s.gossip.keyring()
	if err != nil {
		return nil, nil, err
	}
	b, err := s.tls.load()
	if err != nil {
		return nil, nil, err
	}
	return b, kr, nil
}
