package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/agora-sched/agora/examples/story"
)

// runStory tells the whole story on an in-process dev cluster (make demo).
func runStory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	short := fs.Bool("short", false, "the CI form: fewer keys and units (under 2 minutes)")
	verbose := fs.Bool("v", false, "print the cluster's logs (INFO) and the batch job's progress to stderr")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: finding the agora binary for the tasks: %w", err)
	}
	o := story.Options{Bin: self, Short: *short, Out: os.Stdout}
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.JobOut = os.Stderr
	}
	sum, err := story.Run(ctx, o)
	b, _ := json.Marshal(sum)
	fmt.Println(string(b))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
