package devcluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/tlsconf"
)

// TestAutopilotOverTLS: with mutual TLS the leader's autopilot reaches
// every master (RaftServerStats with the master certificate) and a new
// master joins as a non-voter and is promoted. A master whose stats
// cannot be fetched is never healthy: its term stays 0.
func TestAutopilotOverTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{TLS: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddMaster(ctx); err != nil {
		t.Fatal(err)
	}
	clientTLS, err := c.ClientTLS(tlsconf.RoleClient, "ops")
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New(strings.Join(c.Addrs(), ","), client.WithTLS(clientTLS))
	defer cl.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		resp, err := cl.Operator.RaftHealth(ctx, connect.NewRequest(&agorav1.RaftHealthRequest{}))
		if err == nil {
			h := resp.Msg
			if h.GetHealthy() && len(h.GetVoters()) == 4 && h.GetFailureTolerance() == 1 {
				return
			}
			err = fmt.Errorf("healthy=%v voters=%v tolerance=%d servers=%v", h.GetHealthy(), h.GetVoters(), h.GetFailureTolerance(), h.GetServers())
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("autopilot over TLS: %v", last)
		case <-tick.C:
		}
	}
}
