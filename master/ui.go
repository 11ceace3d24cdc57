package master

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
	"github.com/agora-sched/agora/tlsconf"
	"github.com/agora-sched/agora/ui"
)

// uiHandler is the web UI at /ui/ (package ui). Every master serves its
// own replicated view, labelled with its applied index and the leader; it
// does not proxy to the leader. All of the UI's routes are behind this
// one handler, so an access check can wrap it.
func (m *Master) uiHandler() http.Handler {
	return ui.New(&uiSource{m: m}, m.log.With("component", "ui"))
}

// uiSource implements ui.Source over a master.
type uiSource struct {
	m *Master

	once   sync.Once
	client *http.Client // to other masters and to agents
}

func (s *uiSource) httpClient() *http.Client {
	s.once.Do(func() {
		t := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second, ForceAttemptHTTP2: true}
		if s.m.cfg.TLS != nil {
			t.TLSClientConfig = s.m.cfg.TLS.ClientConfig(s.m.cfg.Cluster)
		}
		// Every call carries its own context deadline; this is a backstop.
		s.client = &http.Client{Transport: t, Timeout: 5 * time.Second}
	})
	return s.client
}

func (s *uiSource) View() ui.View {
	m := s.m
	st := m.fsm.State()
	v := ui.View{State: st, Self: m.cfg.ID, Cluster: m.cfg.Cluster, RaftState: "shutdown", Now: m.Now(), LastContact: -1}
	if m.raft == nil {
		v.AppliedIndex = st.Index()
		return v
	}
	rs := m.raftStats()
	v.RaftState = strings.ToLower(rs.state)
	v.Term, v.CommitIndex, v.AppliedIndex = rs.term, rs.commit, rs.applied
	v.LeaderID, v.LeaderURL = m.Leader()
	v.LeaderReady = m.LeaderReady()
	if m.raft.State() == raft.Leader {
		v.LastContact = 0
	} else if d, err := time.ParseDuration(m.raft.Stats()["last_contact"]); err == nil {
		v.LastContact = d
	}
	return v
}

// Masters lists the masters (masterViews) with each one's applied index
// from its own GetStatus, asked in parallel within ctx.
func (s *uiSource) Masters(ctx context.Context) []ui.MasterView {
	m := s.m
	if m.raft == nil {
		return nil
	}
	commit := m.raft.CommitIndex()
	views := m.masterViews()
	out := make([]ui.MasterView, len(views))
	var wg sync.WaitGroup
	for i, v := range views {
		out[i] = ui.MasterView{ID: v.GetId(), URL: v.GetHttpAddress(), Suffrage: v.GetSuffrage(),
			State: strings.ToLower(strings.TrimPrefix(v.GetState().String(), "MASTER_STATE_"))}
		if v.GetId() == m.cfg.ID {
			out[i].Answered, out[i].AppliedIndex = true, m.raft.AppliedIndex()
			continue
		}
		if v.GetHttpAddress() == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := agorav1connect.NewOperatorServiceClient(s.httpClient(), v.GetHttpAddress())
			res, err := c.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
			if err != nil {
				return
			}
			out[i].Answered, out[i].AppliedIndex = true, res.Msg.GetRaft().GetAppliedIndex()
		}()
	}
	wg.Wait()
	for i := range out {
		if out[i].Answered && commit > out[i].AppliedIndex {
			out[i].Lag = commit - out[i].AppliedIndex
		}
	}
	return out
}

func (s *uiSource) Explain(ctx context.Context, frameworkID string) (*agorav1.ExplainFrameworkResponse, error) {
	res, err := (&operatorServer{m: s.m}).ExplainFramework(ctx, connect.NewRequest(&agorav1.ExplainFrameworkRequest{FrameworkId: frameworkID}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (s *uiSource) Services(st *fsm.State) ([]ui.Service, error) {
	views, err := serviceViewsOf(st, "")
	if err != nil {
		return nil, err
	}
	out := make([]ui.Service, 0, len(views))
	for _, v := range views {
		sv := ui.Service{Name: v.GetName(), FrameworkID: v.GetFrameworkId(), Version: v.GetVersion()}
		if err := json.Unmarshal(v.GetStatus(), &sv.Status); err != nil {
			return nil, fmt.Errorf("service %s: %w", v.GetName(), err)
		}
		out = append(out, sv)
	}
	return out, nil
}

// TaskLog reads the tail of a task's stdout or stderr from its agent's
// /sandbox endpoint (agent/sandbox.go). With TLS the master presents its
// certificate and accepts only an agent's.
func (s *uiSource) TaskLog(ctx context.Context, agentAddr, frameworkID, taskID, stream string, max int) ([]byte, error) {
	scheme := "http"
	client := s.httpClient()
	if s.m.cfg.TLS != nil {
		scheme = "https"
		cfg := s.m.cfg.TLS.ClientConfig(s.m.cfg.Cluster)
		cfg.ServerName = tlsconf.ServerName(tlsconf.RoleAgent, s.m.cfg.Cluster)
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	}
	u := fmt.Sprintf("%s://%s/sandbox/%s/%s/%s?tail=%d", scheme, agentAddr,
		url.PathEscape(frameworkID), url.PathEscape(taskID), url.PathEscape(stream), max)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("task log: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("task log from agent %s: %w", agentAddr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1024))
	if err != nil {
		return nil, fmt.Errorf("task log from agent %s: %w", agentAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, errors.New("agent " + agentAddr + " answered " + strconv.Itoa(resp.StatusCode) + ": " + msg)
	}
	return body, nil
}

func (s *uiSource) Done() <-chan struct{} { return s.m.quit }
