package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad id":      {ID: "a/1", DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0"},
		"no data dir": {ID: "a1", GossipAddr: "127.0.0.1:0"},
		"no gossip":   {ID: "a1", DataDir: t.TempDir()},
		"bad profile": {ID: "a1", DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", GossipProfile: "wan", Resources: resources.MustParse("cpus:1")},
	} {
		cfg.Logger = quietLogger()
		if a, err := New(cfg); err == nil {
			a.Kill()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestHealthAndKill runs an agent without masters: it serves /health and
// /metrics while it waits for them, and Kill stops Run.
func TestHealthAndKill(t *testing.T) {
	a, err := New(Config{
		ID: "a1", DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Resources:     resources.MustParse("cpus:2;mem:512"),
		GossipProfile: gossip.ProfileLocal, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()

	var health map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/health")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&health)
			resp.Body.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /health: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if health["id"] != "a1" || health["registered"] != false {
		t.Errorf("/health = %v", health)
	}
	resp, err := http.Get("http://" + a.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "agora_agent_status_updates_pending 0") {
		t.Errorf("/metrics lacks the outbox gauge:\n%s", body)
	}

	a.Kill()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Kill: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Kill")
	}
	if _, err := http.Get("http://" + a.HTTPAddr() + "/health"); err == nil {
		t.Error("HTTP listener still serves after Kill")
	}
}
