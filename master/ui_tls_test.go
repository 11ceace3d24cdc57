package master_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/tlsconf"
)

// TestUIOverTLS: with mutual TLS on, the UI is served over https to a
// client certificate, the overview reaches the other masters (lag) and a
// task's page fetches its stdout from the agent's TLS listener.
func TestUIOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a TLS cluster with an agent and a service")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{TLS: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	fid := ""
	t.Cleanup(func() {
		c.DecommissionAgents()
		c.Stop()
		if fid != "" {
			for _, pid := range devcluster.PIDsWithEnv("AGORA_FRAMEWORK_ID=" + fid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: "a1", Resources: "cpus:2;mem:1024;disk:1024"}); err != nil {
		t.Fatal(err)
	}
	clientTLS, err := c.ClientTLS(tlsconf.RoleClient, "alice")
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.IssueTLS(tlsconf.RoleClient, "fw")
	if err != nil {
		t.Fatal(err)
	}
	sched := &oneTask{running: make(chan *agorav1.TaskStatus, 1)}
	fctx, fcancel := context.WithCancel(ctx)
	fdone := make(chan error, 1)
	go func() {
		fdone <- framework.Run(fctx, framework.Config{Masters: c.Addrs(), TLS: files, Logger: testLogger(),
			Info: &agorav1.FrameworkInfo{Name: "tls-ui", Roles: []string{"*"}, FailoverTimeoutSeconds: 60}}, sched)
	}()
	defer func() { fcancel(); <-fdone }()
	var st *agorav1.TaskStatus
	select {
	case st = <-sched.running:
	case <-ctx.Done():
		t.Fatal("the task did not run in time")
	}
	fid, taskID := st.GetFrameworkId(), st.GetTaskId()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer hc.CloseIdleConnections()
	leader := c.Leader()
	eventually(t, 20*time.Second, "the task page shows its stdout", func() error {
		code, body, err := getPage(hc, leader.HTTPURL()+"/ui/tasks/"+fid+"/"+taskID)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, `id="stdout">tls-log-line`) {
			i := strings.Index(body, "stdout (")
			return fmt.Errorf("status %d: %s", code, body[max(i, 0):min(len(body), max(i, 0)+400)])
		}
		return nil
	})
	code, body, err := getPage(hc, leader.HTTPURL()+"/ui/")
	if err != nil || code != http.StatusOK {
		t.Fatalf("overview: %d %v", code, err)
	}
	if strings.Contains(body, "no answer") {
		t.Errorf("the overview could not reach every master over TLS:\n%s", body)
	}
}

// oneTask launches one task that prints a line and sleeps, and reports it
// RUNNING.
type oneTask struct {
	mu       sync.Mutex
	launched bool
	running  chan *agorav1.TaskStatus
}

func (s *oneTask) Subscribed(framework.Driver, string, bool) {}
func (s *oneTask) Rescind(framework.Driver, string)          {}
func (s *oneTask) Failure(framework.Driver, string)          {}
func (s *oneTask) Error(framework.Driver, string)            {}

func (s *oneTask) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, o := range offers {
		s.mu.Lock()
		launch := !s.launched
		s.launched = true
		s.mu.Unlock()
		if !launch {
			_ = d.Decline(ctx, []string{o.GetId()}, nil)
			continue
		}
		task := framework.Task("ui-tls-1", o.GetAgentId(), "echo tls-log-line; exec sleep 600",
			framework.Scalar("cpus", 0.1), framework.Scalar("mem", 32))
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(task)}, nil); err != nil {
			s.mu.Lock()
			s.launched = false
			s.mu.Unlock()
		}
	}
}

func (s *oneTask) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	if st.GetState() == agorav1.TaskState_TASK_STATE_RUNNING {
		select {
		case s.running <- st:
		default:
		}
	}
}
