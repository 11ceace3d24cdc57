package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// TestConcurrentCallsShareConnections: calls made together through one
// client to a master it has no connection to yet wait for the connection
// being dialed and share it, instead of each dialing its own (100
// simulated agents per client opened ~19 connections per master at
// start, and thousands in bursts whenever a connection was replaced).
func TestConcurrentCallsShareConnections(t *testing.T) {
	f := &fakeMaster{delay: 200 * time.Millisecond}
	mux := http.NewServeMux()
	mux.Handle(agorav1connect.NewAgentServiceHandler(f))
	s := httptest.NewUnstartedServer(mux)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1000} // as masters allow
	var opened atomic.Int32
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)

	c := New(s.URL)
	defer c.CloseIdleConnections()
	const calls = 200
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := c.Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{AgentId: "a"}))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("call: %v", err)
		}
	}
	// Until a master's settings arrive, a connection is assumed to take
	// 100 streams: 200 calls may open a second one, never one each.
	if n := opened.Load(); n > 2 {
		t.Fatalf("%d concurrent calls opened %d connections to one master, want at most 2", calls, n)
	}
}
