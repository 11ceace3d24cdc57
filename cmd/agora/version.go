package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// buildInfo is what `agora version` reports.
type buildInfo struct {
	Version   string `json:"version"`
	Module    string `json:"module"`
	Revision  string `json:"vcs_revision,omitempty"`
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"vcs_modified"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// readBuildInfo combines -ldflags "-X main.version=..." with what the Go
// toolchain stamped into the binary (module version, VCS revision, time and
// whether the tree was modified; `go build -buildvcs=true` or a build from a
// git checkout without GOFLAGS=-buildvcs=false).
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Module = bi.Main.Path
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func runVersion(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	b := readBuildInfo()
	if *asJSON {
		return printJSON(os.Stdout, b)
	}
	fmt.Printf("agora %s\n", b.Version)
	rev := b.Revision
	if rev == "" {
		rev = "not stamped by the Go toolchain (-buildvcs=false, or not built in a git checkout)"
	} else if b.Modified {
		rev += " (modified)"
	}
	tw := newTable(os.Stdout, "  module:", orDash(b.Module))
	fmt.Fprintf(tw, "  revision:\t%s\n", rev)
	if b.Time != "" {
		fmt.Fprintf(tw, "  commit time:\t%s\n", b.Time)
	}
	fmt.Fprintf(tw, "  go:\t%s\n", b.GoVersion)
	fmt.Fprintf(tw, "  platform:\t%s\n", b.Platform)
	return tw.Flush()
}
