package kvservice

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPutOnPrimaryGetOnFollowers(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.addr(0), "color", "blue")
	for i := 1; i < 3; i++ {
		waitValue(t, c.addr(i), "color", "blue")
	}
	// A write sent to a follower is forwarded to the primary.
	put(t, c.addr(2), "dir/with/slashes", "v2")
	for i := 0; i < 3; i++ {
		waitValue(t, c.addr(i), "dir/with/slashes", "v2")
	}
	// A consistent read on a follower is answered by the primary.
	put(t, c.addr(0), "color", "green")
	if code, body, err := get(c.addr(1), "color?consistent=1"); err != nil || code != 200 || body != "green" {
		t.Fatalf("consistent GET on follower: %d %q %v", code, body, err)
	}
	if code, _, err := get(c.addr(1), "missing"); err != nil || code != http.StatusNotFound {
		t.Fatalf("GET missing: %d %v, want 404", code, err)
	}
	st, err := status(c.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "primary" || st.Quorum != 2 || st.AppliedSeq != 3 || st.CommitSeq != 3 || st.Keys != 2 {
		t.Fatalf("primary status: %+v", st)
	}
}

func TestWriteNeedsQuorum(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.addr(0), "a", "1")

	// One follower down: 2 of 3 is still a quorum.
	c.stopPod(2)
	put(t, c.addr(0), "b", "2")

	// Both down: the write is refused within the write timeout.
	c.stopPod(1)
	start := time.Now()
	code, body, err := do(http.MethodPut, "http://"+c.addr(0)+"/kv/c", "3")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no quorum") ||
		!strings.Contains(body, "durable on 1 of 3 pods") {
		t.Fatalf("PUT without quorum: %d %q", code, body)
	}
	if took < c.writeTimeout || took > c.writeTimeout+5*time.Second {
		t.Fatalf("PUT without quorum took %s, want about the write timeout %s", took, c.writeTimeout)
	}
	// A consistent read cannot be answered either (the unacknowledged write
	// is in the primary's log).
	if code, body, _ := get(c.addr(0), "a?consistent=1"); code != http.StatusServiceUnavailable {
		t.Fatalf("consistent GET without quorum: %d %q", code, body)
	}
	// A follower back: the pending write reaches a quorum; new writes work.
	c.start(1, c.peers())
	put(t, c.addr(0), "d", "4")
	waitValue(t, c.addr(1), "c", "3") // the failed write's outcome was unknown; it took effect
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.addr(0), "k0", "before")
	waitValue(t, c.addr(2), "k0", "before")
	c.stopPod(2)
	for i := 1; i <= 20; i++ {
		put(t, c.addr(0), fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.start(2, c.peers())
	c.waitReady()
	// Ready means caught up with the primary's log as it was: no polling.
	for i := 1; i <= 20; i++ {
		if code, body, err := get(c.addr(2), fmt.Sprintf("k%d", i)); err != nil || code != 200 || body != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d on restarted follower: %d %q %v", i, code, body, err)
		}
	}
	if st, _ := status(c.addr(2)); st.AppliedSeq != 21 {
		t.Fatalf("restarted follower status: %+v", st)
	}
}

func TestPrimaryRestartKeepsAcknowledgedWrites(t *testing.T) {
	c := newCluster(t, 3)
	for i := 0; i < 10; i++ {
		put(t, c.addr(i%3), fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.stopPod(0)
	c.start(0, c.peers())
	// The primary trusts its own log (it has its marker): it serves at once,
	// even with no follower reachable.
	c.stopPod(1)
	c.stopPod(2)
	c.waitReady()
	for i := 0; i < 10; i++ {
		if code, body, err := get(c.addr(0), fmt.Sprintf("k%d", i)); err != nil || code != 200 || body != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after primary restart: %d %q %v", i, code, body, err)
		}
	}
	c.start(1, c.peers())
	c.start(2, c.peers())
	put(t, c.addr(1), "after", "restart")
	waitValue(t, c.addr(2), "after", "restart")
}

func TestPrimaryReplacedWithEmptyVolumeRecovers(t *testing.T) {
	c := newCluster(t, 3)
	for i := 0; i < 10; i++ {
		put(t, c.addr(0), fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.stopPod(0)
	c.stopPod(2) // only pod 1 up: an empty primary must not serve yet
	c.pods[0].dir = filepath.Join(t.TempDir(), "new-volume")
	c.start(0, c.peers())
	eventually(t, "recovering primary refuses writes", func() error {
		code, body, err := do(http.MethodPut, "http://"+c.addr(0)+"/kv/x", "y")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "recovering") {
			return fmt.Errorf("PUT: %d %q", code, body)
		}
		return nil
	})
	if code, body, _ := get(c.addr(0), "k0"); code != http.StatusServiceUnavailable {
		t.Fatalf("GET on recovering primary: %d %q, want 503", code, body)
	}
	c.start(2, c.peers())
	c.waitReady()
	for i := 0; i < 10; i++ {
		waitValue(t, c.addr(0), fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	put(t, c.addr(0), "new", "write")
	waitValue(t, c.addr(1), "new", "write")
	waitValue(t, c.addr(2), "new", "write")
	if _, err := os.Stat(filepath.Join(c.pods[0].dir, markerFileName)); err != nil {
		t.Fatalf("recovery marker: %v", err)
	}
}

func TestDivergedFollowerDiscardsItsLog(t *testing.T) {
	c := newCluster(t, 3)
	put(t, c.addr(0), "a", "1")
	waitValue(t, c.addr(2), "a", "1")
	c.stopPod(2)
	// Forge what a follower holds after its primary lost its volume: an
	// entry the primary never had, from another epoch.
	lf, entries, err := openLog(c.pods[2].dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.append([]entry{{Seq: uint64(len(entries)) + 1, Epoch: 42, Key: "ghost", Value: []byte("boo")}}); err != nil {
		t.Fatal(err)
	}
	lf.close()
	put(t, c.addr(0), "b", "2") // the primary's seq 2 differs from the ghost's
	c.start(2, c.peers())
	waitValue(t, c.addr(2), "b", "2")
	c.waitReady()
	if code, _, _ := get(c.addr(2), "ghost"); code != http.StatusNotFound {
		t.Fatalf("ghost entry survived on the diverged follower: %d", code)
	}
	waitValue(t, c.addr(2), "a", "1")
	if !strings.Contains(c.logs.String(), "discarded the local log") {
		t.Fatal("no WARN about the discarded log")
	}
}

func TestScaleByPeerUpdate(t *testing.T) {
	c := newCluster(t, 3)
	for i := 0; i < 5; i++ {
		put(t, c.addr(0), fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	c.addPod(3)
	peers := c.peers()
	c.start(3, peers)
	c.waitReady()
	for i := 0; i < 5; i++ {
		if code, body, _ := get(c.addr(3), fmt.Sprintf("k%d", i)); code != 200 || body != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d on new pod: %d %q", i, code, body)
		}
	}
	for i := 0; i < 3; i++ {
		code, body, err := do(http.MethodPut, "http://"+c.addr(i)+"/peers", peers.String())
		if err != nil || code != http.StatusNoContent {
			t.Fatalf("PUT /peers on pod %d: %d %q %v", i, code, body, err)
		}
	}
	st, err := status(c.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	if st.Quorum != 3 || len(st.Peers) != 4 {
		t.Fatalf("primary after peer update: %+v", st)
	}
	// Quorum 3 of 4: with pods 1 and 2 down, pod 3 alone is not enough.
	put(t, c.addr(3), "k5", "v5")
	waitValue(t, c.addr(3), "k5", "v5")
	c.stopPod(1)
	c.stopPod(2)
	code, body, _ := do(http.MethodPut, "http://"+c.addr(0)+"/kv/k6", "v6")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "durable on 2 of 4 pods") || !strings.Contains(body, "needs 3") {
		t.Fatalf("PUT with 2 of 4: %d %q", code, body)
	}
}

func TestBadInput(t *testing.T) {
	c := newCluster(t, 1)
	a := "http://" + c.addr(0)
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"empty key put", http.MethodPut, "/kv/", "x", http.StatusBadRequest},
		{"empty key get", http.MethodGet, "/kv/", "", http.StatusBadRequest},
		{"long key", http.MethodPut, "/kv/" + strings.Repeat("k", MaxKeyBytes+1), "x", http.StatusBadRequest},
		{"huge value", http.MethodPut, "/kv/big", strings.Repeat("v", MaxValueBytes+1), http.StatusRequestEntityTooLarge},
		{"delete", http.MethodDelete, "/kv/a", "", http.StatusMethodNotAllowed},
		{"peers garbage", http.MethodPut, "/peers", "nonsense", http.StatusBadRequest},
		{"peers without primary", http.MethodPut, "/peers", "1=127.0.0.1:1", http.StatusBadRequest},
		{"peers without this pod", http.MethodPut, "/peers", "0=127.0.0.1:1,0=127.0.0.1:2", http.StatusBadRequest},
		{"log bad after", http.MethodGet, "/internal/log?after=x", "", http.StatusBadRequest},
		{"max key ok", http.MethodPut, "/kv/" + strings.Repeat("k", MaxKeyBytes), "x", http.StatusNoContent},
		{"max value ok", http.MethodPut, "/kv/big", strings.Repeat("v", MaxValueBytes), http.StatusNoContent},
		{"empty value ok", http.MethodPut, "/kv/empty", "", http.StatusNoContent},
	}
	for _, tc := range cases {
		code, body, err := do(tc.method, a+tc.path, tc.body)
		if err != nil || code != tc.want {
			t.Errorf("%s: %d %q %v, want %d", tc.name, code, body, err, tc.want)
		}
	}
	// Rejections changed nothing.
	st, err := status(c.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	if st.AppliedSeq != 3 || st.Keys != 3 || len(st.Peers) != 1 {
		t.Fatalf("status after bad input: %+v", st)
	}
}

func TestParsePeers(t *testing.T) {
	p, err := ParsePeers(" 1=h1:1 , 0=h0:2,2=[::1]:3,")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.String(); got != "0=h0:2,1=h1:1,2=[::1]:3" {
		t.Fatalf("String: %q", got)
	}
	for _, bad := range []string{"", "0", "0=h", "x=h:1", "-1=h:1,0=h:2", "0=h:1,0=h:2", "1=h:1"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q): no error", bad)
		}
	}
	for n, want := range map[int][2]int{1: {1, 0}, 2: {2, 1}, 3: {2, 2}, 4: {3, 2}, 5: {3, 3}} {
		p := Peers{}
		for i := 0; i < n; i++ {
			p[i] = "h:1"
		}
		if q, r := p.Quorum(), p.recoveryReads(); q != want[0] || r != want[1] {
			t.Errorf("%d pods: quorum %d, recovery reads %d; want %v", n, q, r, want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"negative index":  {Index: -1, DataDir: dir, Peers: Peers{0: "h:1"}},
		"no data dir":     {Index: 0, Peers: Peers{0: "h:1"}},
		"not in peers":    {Index: 2, DataDir: dir, Peers: Peers{0: "h:1", 1: "h:2"}},
		"no primary":      {Index: 1, DataDir: dir, Peers: Peers{1: "h:2"}},
		"no listen (Run)": {Index: 0, DataDir: dir, Peers: Peers{0: "h:1"}},
	} {
		var err error
		if name == "no listen (Run)" {
			err = Run(t.Context(), cfg)
		} else {
			_, err = New(cfg)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestNoAcknowledgedWriteLost writes concurrently through every pod while a
// follower and then the primary restart; every acknowledged write is then
// on every pod.
func TestNoAcknowledgedWriteLost(t *testing.T) {
	c := newCluster(t, 3)
	type ack struct{ key, value string }
	acks := make(chan ack, 10000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, value := fmt.Sprintf("g%d-%d", g, i), fmt.Sprintf("v%d", i)
				code, _, err := do(http.MethodPut, "http://"+c.addr((g+i)%3)+"/kv/"+key, value)
				if err == nil && code == http.StatusNoContent {
					acks <- ack{key, value}
				}
			}
		}()
	}
	waitAcks := func(n int) {
		eventually(t, fmt.Sprintf("%d acknowledged writes", n), func() error {
			if len(acks) < n {
				return fmt.Errorf("%d so far", len(acks))
			}
			return nil
		})
	}
	waitAcks(50)
	c.stopPod(1)
	waitAcks(100)
	c.start(1, c.peers())
	c.stopPod(0)
	c.start(0, c.peers())
	waitAcks(200)
	close(stop)
	wg.Wait()
	close(acks)
	c.waitReady()
	n := 0
	for a := range acks {
		n++
		if code, body, err := get(c.addr(1), a.key+"?consistent=1"); err != nil || code != 200 || body != a.value {
			t.Fatalf("acknowledged %s=%s, consistent read: %d %q %v", a.key, a.value, code, body, err)
		}
		for i := 0; i < 3; i++ {
			waitValue(t, c.addr(i), a.key, a.value)
		}
	}
	t.Logf("%d acknowledged writes checked on 3 pods", n)
}
