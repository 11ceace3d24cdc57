package master_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func getPage(hc *http.Client, url string) (int, string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestUIServedByEveryMaster: the leader's UI shows its state; a follower
// labels its replicated view and links to the leader; unknown objects are
// 404 pages; a live event stream ends when the cluster stops.
func TestUIServedByEveryMaster(t *testing.T) {
	c := startCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := c.Leader()
	hc := &http.Client{Timeout: 10 * time.Second}
	cl := client.New(leader.HTTPURL())
	// Retried: on a loaded machine an attempt may pass the client's
	// deadline ("may or may not have been applied"); SetRole is idempotent.
	eventually(t, 60*time.Second, "set role ui-role", func() error {
		_, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: "ui-role", Weight: 2, Priority: 3})
		return err
	})
	// The leader may change on a loaded machine: ask whoever leads now.
	eventually(t, 30*time.Second, "the leader's roles page", func() error {
		leader = c.Leader()
		if leader == nil {
			return fmt.Errorf("no leader")
		}
		code, body, err := getPage(hc, leader.HTTPURL()+"/ui/roles")
		if err != nil || code != http.StatusOK || !strings.Contains(body, `data-id="ui-role"`) || !strings.Contains(body, "(leader, term") {
			return fmt.Errorf("%d %v", code, err)
		}
		return nil
	})
	code, body, err := getPage(hc, leader.HTTPURL()+"/ui")
	if err != nil || code != http.StatusOK || !strings.Contains(body, `id="masters"`) {
		t.Fatalf("/ui (redirected to /ui/): %d %v", code, err)
	}
	for _, m := range c.Masters() {
		if !strings.Contains(body, "<td>"+m.ID()+"</td>") {
			t.Errorf("overview lacks master %s", m.ID())
		}
	}
	follower := c.Master(followerIndex(c))
	eventually(t, 30*time.Second, "follower's banner", func() error {
		l := c.Leader()
		if l == nil || l.ID() == follower.ID() {
			return fmt.Errorf("%s is not a follower now", follower.ID())
		}
		code, body, err := getPage(hc, follower.HTTPURL()+"/ui/")
		switch {
		case err != nil:
			return err
		case code != http.StatusOK:
			return fmt.Errorf("status %d", code)
		case !strings.Contains(body, "follower of "+l.ID()) || !strings.Contains(body, `href="`+l.HTTPURL()+`/ui/"`):
			return fmt.Errorf("banner: %s", body[strings.Index(body, `id="banner"`):][:200])
		}
		return nil
	})
	code, body, err = getPage(hc, follower.HTTPURL()+"/ui/agents/nope")
	if err != nil || code != http.StatusNotFound || !strings.Contains(body, `agent &#34;nope&#34; does not exist`) {
		t.Errorf("unknown agent: %d %v\n%s", code, err, body)
	}

	// A live stream ends when the masters stop.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, leader.HTTPURL()+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatalf("no event: %v", sc.Err())
	}
	c.Stop()
	for sc.Scan() {
	}
	if ctx.Err() != nil {
		t.Fatal("the event stream outlived the cluster")
	}
}
