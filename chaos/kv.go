package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/chaos/check"
	"github.com/agora-sched/agora/examples/kvservice"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// The workload's kv service: a kvservice deployed through the service
// scheduler (`agora service run`), whose primary one writer sends unique
// keys to.
const (
	// kvName is the service's name and its role.
	kvName = "chaos-kv"
	// kvPods is its pod count: a quorum (2 of 3) survives one pod down.
	kvPods = 3
	// kvClient numbers the writer in the history.
	kvClient = 300
	// kvPace is the pause after an acknowledged write, kvRetry the pause
	// after a failed one (the primary's address is then resolved again).
	kvPace  = 20 * time.Millisecond
	kvRetry = 200 * time.Millisecond
)

// errKVReadDeadline answers the reads of keys left when the final read's
// deadline has passed.
var errKVReadDeadline = errors.New("chaos: kv read deadline passed")

// kvSpec is the kv service's spec: small pods (0.1 cpu, 64 MiB, a 128 MiB
// volume, one port) that fit beside the frameworks' tasks, running
// `exec BIN kvservice`. Readiness is polled every 200 ms.
func kvSpec(bin string) ([]byte, error) {
	spec := service.Spec{Name: kvName, Role: kvName, Pods: []service.PodSpec{{
		Name:      "kv",
		Count:     kvPods,
		Resources: service.Resources{CPUs: 0.1, Mem: 64, Disk: 256, Ports: service.Ports{"http"}},
		Volume:    &service.VolumeSpec{Size: 128, Path: "data"},
		// The agent names the volume's host directory; {{.Volume}} is the
		// fallback.
		Command: fmt.Sprintf(`export %s="${AGORA_VOLUME_PATH_DATA:-$%s}"; exec %s kvservice`,
			kvservice.EnvData, kvservice.EnvData, shellQuote(bin)),
		Env: map[string]string{
			kvservice.EnvIndex:  "{{.Index}}",
			kvservice.EnvListen: `:{{port "http"}}`,
			kvservice.EnvData:   "{{.Volume}}",
			kvservice.EnvPeers:  `{{peers "http"}}`,
		},
		Readiness: &service.Readiness{HTTP: &service.HTTPCheck{Port: "http", Path: "/health"},
			IntervalSeconds: 0.2, TimeoutSeconds: 1, DeadlineSeconds: 60},
		KillGraceSeconds: 2,
	}}}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("chaos: kv spec: %w", err)
	}
	return b, nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// kvWorkload deploys the kv service, writes to it during the run and
// reads every acknowledged write back at the end.
type kvWorkload struct {
	w  *workload
	op *client.Client
	hc *http.Client

	mu      sync.Mutex
	primary string            // pod 0's dialable address; "" to resolve again
	acked   map[string]string // key -> value of every PUT answered 2xx
	sent    int               // PUTs sent
}

func newKVWorkload(w *workload) *kvWorkload {
	return &kvWorkload{
		w:     w,
		op:    newClient(w.c, strings.Join(w.c.MasterURLs(), ","), client.WithCallTimeout(callTimeout)),
		hc:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: callTimeout},
		acked: map[string]string{},
	}
}

// deploy runs the kv service (RunService), trying again until limit while
// the answer leaves the outcome unknown.
func (k *kvWorkload) deploy(ctx context.Context, limit time.Duration) (string, error) {
	spec, err := kvSpec(k.w.c.AgoraPath())
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := k.op.Operator.RunService(cctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: spec}))
		cancel()
		switch {
		case err == nil:
			return resp.Msg.GetFrameworkId(), nil
		case connect.CodeOf(err) == connect.CodeAlreadyExists:
			return "", nil // an earlier attempt whose answer was lost ran it
		case definitelyRejected(err):
			return "", fmt.Errorf("chaos: run the kv service: %w", err)
		case time.Now().After(deadline):
			return "", fmt.Errorf("chaos: run the kv service: not within %s: %w", limit, err)
		}
		if !pause(ctx, 500*time.Millisecond) {
			return "", ctx.Err()
		}
	}
}

// status reads the service's status; stale lets any master answer.
func (k *kvWorkload) status(ctx context.Context, stale bool) (service.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := k.op.Operator.GetService(cctx, connect.NewRequest(&agorav1.GetServiceRequest{Name: kvName, Read: &agorav1.ReadOptions{Stale: stale}}))
	if err != nil {
		return service.Status{}, fmt.Errorf("chaos: kv service status: %w", err)
	}
	var st service.Status
	if err := json.Unmarshal(resp.Msg.GetService().GetStatus(), &st); err != nil {
		return service.Status{}, fmt.Errorf("chaos: kv service status: %w", err)
	}
	return st, nil
}

// resolve returns the primary's (pod 0's) address, asking the masters
// when it is not known; "" when they do not know it either.
func (k *kvWorkload) resolve(ctx context.Context) string {
	k.mu.Lock()
	addr := k.primary
	k.mu.Unlock()
	if addr != "" {
		return addr
	}
	st, err := k.status(ctx, true)
	if err != nil {
		return ""
	}
	for _, p := range st.Pods {
		if p.Index == 0 && p.Address != "" {
			addr = k.w.c.AgentAddr(p.Address)
		}
	}
	k.mu.Lock()
	k.primary = addr
	k.mu.Unlock()
	return addr
}

// forget drops the primary's address after a failed call, so the next
// call resolves it again.
func (k *kvWorkload) forget() {
	k.mu.Lock()
	k.primary = ""
	k.mu.Unlock()
}

// writer PUTs keys w1, w2, ... (each once, with a value of its own) to the
// primary until ctx ends. A 2xx answer acknowledges the write; any other
// answer or error leaves its outcome unknown, and the key is not written
// again.
func (k *kvWorkload) writer(ctx context.Context) {
	for n := 1; ctx.Err() == nil; {
		addr := k.resolve(ctx)
		if addr == "" {
			pause(ctx, kvRetry)
			continue
		}
		key, value := fmt.Sprintf("w%d", n), fmt.Sprintf("s%d-%d", k.w.seed, n)
		n++
		call := k.w.h.Now()
		err := k.put(ctx, addr, key, value)
		k.w.record(kvClient, "kv-put", key+"="+value, call, "", err, true)
		k.mu.Lock()
		k.sent++
		if err == nil {
			k.acked[key] = value
		}
		k.mu.Unlock()
		if err != nil {
			k.forget()
			pause(ctx, kvRetry)
			continue
		}
		pause(ctx, kvPace)
	}
}

// put writes key=value through the primary at addr; nil only for a 2xx
// answer.
func (k *kvWorkload) put(ctx context.Context, addr, key, value string) error {
	return kvservice.Put(ctx, k.hc, addr, key, value)
}

// get reads key from the primary at addr with a consistent read (the
// primary answers once everything in its log is durable on a quorum).
func (k *kvWorkload) get(ctx context.Context, addr, key string) (string, bool, error) {
	return kvservice.Get(ctx, k.hc, addr, key, true)
}

// waitComplete polls the service (linearizable reads) until its plan is
// COMPLETE with every pod RUNNING and ready, or limit; the error carries
// the last status seen.
func (k *kvWorkload) waitComplete(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for {
		st, err := k.status(ctx, false)
		if err == nil {
			ready := 0
			for _, p := range st.Pods {
				if p.Ready && p.State == "RUNNING" {
					ready++
				}
			}
			if st.Plan.State == service.PlanComplete && ready == kvPods && len(st.Pods) == kvPods {
				return nil
			}
			b, _ := json.Marshal(st)
			last = string(b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) || !pause(ctx, 200*time.Millisecond) {
			return fmt.Errorf("chaos: kv service not COMPLETE within %s: %s", limit, last)
		}
	}
}

// readBack reads every acknowledged key back from the primary (check.KVLost),
// each read tried up to 3 times with the address resolved again, all of
// them within limit.
func (k *kvWorkload) readBack(ctx context.Context, limit time.Duration) check.KVResult {
	deadline := time.Now().Add(limit)
	read := func(key string) (string, bool, error) {
		last := errKVReadDeadline
		for attempt := 0; attempt < 3 && time.Now().Before(deadline); attempt++ {
			if attempt > 0 && !pause(ctx, kvRetry) {
				break
			}
			addr := k.resolve(ctx)
			if addr == "" {
				last = errors.New("chaos: the masters name no address for the kv primary")
				continue
			}
			v, found, err := k.get(ctx, addr, key)
			if err == nil {
				return v, found, nil
			}
			last = err
			k.forget()
		}
		return "", false, last
	}
	k.mu.Lock()
	acked := make(map[string]string, len(k.acked))
	for key, v := range k.acked {
		acked[key] = v
	}
	k.mu.Unlock()
	res := check.KVLost(acked, read)
	k.hc.CloseIdleConnections()
	return res
}

// counts returns the PUTs sent and acknowledged so far.
func (k *kvWorkload) counts() (sent, acked int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.sent, len(k.acked)
}

// pause waits d or until ctx ends; false when ctx ended.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
