package master_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/backup"
	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/gen/agora/v1/agorav1connect"
)

// snapshotCluster starts 3 masters that leave a registered agent and a
// framework without a stream alone for the length of a test.
func snapshotCluster(t *testing.T, ctx context.Context) (*devcluster.Cluster, *master.Master) {
	t.Helper()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: testLogger(),
		MasterConfig: func(mc *master.Config) {
			mc.LivenessGrace = 10 * time.Minute
			mc.FrameworkReconnectGrace = 10 * time.Minute
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c, l
}

func res(name string, v float64, role string) *agorav1.Resource {
	return &agorav1.Resource{Name: name, Scalar: v, Role: role}
}

// populate writes roles, an agent, a framework, a reservation, a volume
// and a task through the leader, as fsm/testdata/scenarios/agentgone.txt
// does (the offer is the leader allocator's).
func populate(t *testing.T, ctx context.Context, l *master.Master) {
	t.Helper()
	now := timestamppb.New(l.Now())
	cmds := []struct {
		t   fsm.CommandType
		msg proto.Message
	}{
		{fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "db", Weight: 2}}},
		{fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: &agorav1.Role{Name: "web", Weight: 1}}},
		{fsm.CmdRegisterAgent, &agorav1.RegisterAgentCommand{Now: now, Agent: &agorav1.Agent{Id: "a1", Hostname: "h1", Address: "10.0.0.1:5051",
			Resources: []*agorav1.Resource{res("cpus", 4, ""), res("mem", 4096, ""), res("disk", 10000, "")}}}},
		{fsm.CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Now: now, Framework: &agorav1.Framework{Id: "dbfw",
			Info: &agorav1.FrameworkInfo{Name: "db", Principal: "dbp", Roles: []string{"db"}}, StreamToken: "s1"}}},
		{fsm.CmdAccept, &agorav1.AcceptCommand{FrameworkId: "dbfw", Now: now, Ids: []string{"r-snap"},
			Operations: []*agorav1.Operation{
				{Type: agorav1.OperationType_OPERATION_TYPE_RESERVE, Resources: []*agorav1.Resource{res("cpus", 1, "db"), res("mem", 1024, "db"), res("disk", 2000, "db")}},
				{Type: agorav1.OperationType_OPERATION_TYPE_CREATE, Volumes: []*agorav1.VolumeInfo{{Id: "v-snap", SizeMib: 1000, ContainerPath: "data"}}},
				{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH, Tasks: []*agorav1.TaskInfo{{TaskId: "t-snap", Name: "t-snap",
					Resources: []*agorav1.Resource{res("cpus", 1, "db"), res("mem", 512, "db")},
					Command:   &agorav1.CommandInfo{Value: "sleep 600"}, VolumeIds: []string{"v-snap"}}}},
			}}},
	}
	for _, c := range cmds {
		if acc, ok := c.msg.(*agorav1.AcceptCommand); ok {
			// The leader's allocator offers the agent to the framework.
			waitUntil(t, 10*time.Second, "an offer to the framework", func() error {
				for _, o := range l.State().OffersByFramework("dbfw") {
					acc.OfferIds = []string{o.GetId()}
					return nil
				}
				return fmt.Errorf("no offer")
			})
		}
		if _, err := l.Apply(ctx, c.t, c.msg); err != nil {
			t.Fatalf("apply %v: %v", c.t, err)
		}
	}
}

// ids lists what a restore must bring back: frameworks, reservations,
// volumes, tasks and roles.
func ids(st *fsm.State) []string {
	var out []string
	for _, f := range st.Frameworks() {
		out = append(out, "framework/"+f.GetId())
	}
	for _, r := range st.Reservations() {
		out = append(out, "reservation/"+r.GetId())
	}
	for _, v := range st.Volumes() {
		out = append(out, "volume/"+v.GetId())
	}
	for _, tk := range st.Tasks() {
		out = append(out, "task/"+tk.GetFrameworkId()+"/"+tk.GetId())
	}
	for _, r := range st.Roles() {
		out = append(out, "role/"+r.GetName())
	}
	slices.Sort(out)
	return out
}

func leaderOp(l *master.Master) agorav1connect.OperatorServiceClient {
	return agorav1connect.NewOperatorServiceClient(client.DefaultHTTPClient(), l.HTTPURL())
}

// rewrite returns a copy of a backup file changed by fn, with the
// header's checksums recomputed when fix is set.
func rewrite(t *testing.T, good []byte, name string, fix bool, fn func(b []byte) []byte) string {
	t.Helper()
	b := fn(slices.Clone(good))
	if fix {
		sum := sha256.Sum256(b[backup.HeaderSize:])
		copy(b[40:72], sum[:])
		binary.BigEndian.PutUint64(b[32:], uint64(len(b)-backup.HeaderSize))
		binary.BigEndian.PutUint32(b[12:], crc32.ChecksumIEEE(b[16:backup.HeaderSize]))
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSnapshotSaveRestore saves a snapshot of a populated cluster, checks
// that a fresh cluster refuses truncated, corrupt, undecodable and
// other-version files with InvalidArgument and no change, then restores
// the file there and finds every framework, reservation, volume, task
// and role of the snapshot.
func TestSnapshotSaveRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	_, la := snapshotCluster(t, ctx)
	populate(t, ctx, la)
	path := filepath.Join(t.TempDir(), "agora.snap")
	h, err := backup.Save(ctx, leaderOp(la), path)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h2, body, err := backup.VerifyFile(f)
	if err != nil || h2 != h {
		t.Fatalf("verify saved file: %v (header %+v, saved %+v)", err, h2, h)
	}
	counts, snapState, err := backup.Inspect(body)
	if err != nil {
		t.Fatal(err)
	}
	want := ids(snapState)
	for _, w := range []string{"framework/dbfw", "reservation/r-snap", "volume/v-snap", "task/dbfw/t-snap", "role/db", "role/web"} {
		if !slices.Contains(want, w) {
			t.Fatalf("snapshot lacks %s: %v", w, want)
		}
	}
	if counts.Frameworks != 1 || counts.Reservations != 1 || counts.Volumes != 1 || counts.Tasks != 1 || counts.Roles != 2 || counts.Agents != 1 {
		t.Fatalf("inspect counts: %+v", counts)
	}
	if h.Index < snapState.Index() || h.Term == 0 {
		t.Fatalf("header index %d term %d, state index %d", h.Index, h.Term, snapState.Index())
	}

	// A fresh cluster refuses bad files and changes nothing.
	cb, lb := snapshotCluster(t, ctx)
	waitUntil(t, 10*time.Second, "fresh cluster records its masters", func() error {
		if n := len(lb.State().Masters()); n != 3 {
			return fmt.Errorf("%d master records", n)
		}
		return nil
	})
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"truncated": rewrite(t, good, "truncated", false, func(b []byte) []byte { return b[:len(b)-len(b)/3] }),
		"corrupt":   rewrite(t, good, "corrupt", false, func(b []byte) []byte { b[len(b)-5] ^= 0xff; return b }),
		"header":    rewrite(t, good, "header", false, func(b []byte) []byte { b[20] ^= 0x01; return b }),
		"version": rewrite(t, good, "version", true, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[8:], backup.FormatVersion+1)
			return b
		}),
		"undecodable": rewrite(t, good, "undecodable", true, func(b []byte) []byte {
			for i := backup.HeaderSize; i < len(b); i++ {
				b[i] = 0x7f
			}
			return b
		}),
		"not a backup": rewrite(t, good, "junk", false, func(b []byte) []byte { return []byte("hello, this is not a snapshot") }),
	}
	lastIndex, stateIndex := lb.Raft().LastIndex(), lb.State().Index()
	before := ids(lb.State())
	for name, p := range bad {
		bf, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = backup.Send(ctx, leaderOp(lb), bf)
		bf.Close()
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("restore %s file: %v, want InvalidArgument", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if lb.Raft().LastIndex() != lastIndex || lb.State().Index() != stateIndex || !slices.Equal(ids(lb.State()), before) {
		t.Fatalf("refused restores changed the cluster: last index %d -> %d, state index %d -> %d",
			lastIndex, lb.Raft().LastIndex(), stateIndex, lb.State().Index())
	}

	// A follower redirects; the leader restores.
	for _, m := range cb.Masters() {
		if m != lb {
			_, err := backup.Send(ctx, leaderOp(m), f)
			if _, _, ok := client.LeaderFromError(err); !ok {
				t.Fatalf("restore at follower %s: %v, want a redirect", m.ID(), err)
			}
			break
		}
	}
	resp, err := backup.Send(ctx, leaderOp(lb), f)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if resp.GetIndex() != h.Index || resp.GetAppliedIndex() <= h.Index {
		t.Fatalf("restore answered %+v for snapshot index %d", resp, h.Index)
	}
	for _, m := range cb.Masters() {
		waitUntil(t, 15*time.Second, "restored state on "+m.ID(), func() error {
			got := ids(m.State())
			for _, w := range want {
				if !slices.Contains(got, w) {
					return fmt.Errorf("missing %s (have %v)", w, got)
				}
			}
			return nil
		})
	}
	// The restored cluster takes writes.
	waitUntil(t, 15*time.Second, "write after restore", func() error {
		cl := client.New(cb.Addrs()[0])
		_, err := setRole(ctx, cl.Operator, &agorav1.Role{Name: "after-restore", Weight: 1})
		return err
	})
}
