package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ErrDockerUnavailable wraps the reason the docker tier cannot run here.
var ErrDockerUnavailable = errors.New("chaos: docker tier unavailable")

// DockerOptions configure a docker-tier cluster.
type DockerOptions struct {
	// Binary is a statically linked agora binary (CGO_ENABLED=0).
	Binary string
	// Dir holds the image build context, node data (bind-mounted at /data)
	// and container logs.
	Dir string
	// Masters and Agents count the containers.
	Masters, Agents int
	// Seed names the network and picks its subnet.
	Seed   uint64
	Logger *slog.Logger
}

// Dockerfile is the image the docker tier builds (deploy/Dockerfile holds
// the same): FROM scratch, the static agora binary, and /bin/sh with the
// C library it needs copied from the host so that the agent's executor
// (which runs commands with /bin/sh -c) can start test tasks such as
// "/agora sleep 20".
const Dockerfile = `FROM scratch
COPY rootfs/ /
COPY agora /agora
ENTRYPOINT ["/agora"]
`

// DockerAvailable reports whether `docker info` answers, and why not.
func DockerAvailable(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("%w: no docker command: %v", ErrDockerUnavailable, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return fmt.Errorf("%w: docker info: %v: %s", ErrDockerUnavailable, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// IsStatic reports whether the ELF binary at path has no interpreter.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("chaos: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

type dockerCluster struct {
	o       DockerOptions
	log     *slog.Logger
	image   string
	network string
	subnet  string // "10.x.y"
	shell   bool

	mu       sync.Mutex
	created  map[string]bool
	isolated map[string]bool
}

// NewDockerCluster builds the image (FROM scratch with the static binary),
// creates a private network and lays out one container per master and
// agent, each with its own address. Nothing runs until StartMaster and
// StartAgent.
func NewDockerCluster(ctx context.Context, o DockerOptions) (Cluster, error) {
	if err := DockerAvailable(ctx); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		return nil, errors.New("chaos: docker tier needs the agora binary")
	}
	static, err := IsStatic(o.Binary)
	if err != nil {
		return nil, err
	}
	if !static {
		return nil, fmt.Errorf("%w: %s is dynamically linked; build it with CGO_ENABLED=0", ErrDockerUnavailable, o.Binary)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &dockerCluster{o: o, log: o.Logger, created: map[string]bool{}, isolated: map[string]bool{}}
	if err := c.buildImage(ctx); err != nil {
		return nil, err
	}
	if err := c.createNetwork(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *dockerCluster) docker(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(cctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("chaos: docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// buildImage builds agora-chaos:<hash of binary> unless it exists.
func (c *dockerCluster) buildImage(ctx context.Context) error {
	bin, err := os.ReadFile(c.o.Binary)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	sum := sha256.Sum256(bin)
	c.image = "agora-chaos:" + hex.EncodeToString(sum[:6])
	dir := filepath.Join(c.o.Dir, "image")
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "tmp"), 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	c.shell = copyShell(filepath.Join(dir, "rootfs")) == nil
	if _, err := c.docker(ctx, "image", "inspect", c.image); err == nil {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "agora"), bin, 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(Dockerfile), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if _, err := c.docker(ctx, "build", "-q", "-t", c.image, dir); err != nil {
		return err
	}
	return nil
}

var lddPath = regexp.MustCompile(`(/[^\s]+) \(0x`)

// copyShell copies the host's /bin/sh and the shared libraries ldd lists
// for it into rootfs.
func copyShell(rootfs string) error {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		return err
	}
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", sh, err)
	}
	files := map[string]string{"/bin/sh": sh}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		files[m[1]] = m[1]
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		p := filepath.Join(rootfs, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (c *dockerCluster) createNetwork(ctx context.Context) error {
	base := int(c.o.Seed%200) + int(os.Getpid()%50)
	var last error
	for k := 0; k < 20; k++ {
		x, y := 200+(base+k)%50, (base*7+k)%250
		c.network = fmt.Sprintf("agora-chaos-%d-%d", c.o.Seed, os.Getpid()+k)
		c.subnet = fmt.Sprintf("10.%d.%d", x, y)
		_, err := c.docker(ctx, "network", "create", "--driver", "bridge", "--subnet", c.subnet+".0/24", c.network)
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

func (c *dockerCluster) name(i int, agent bool) string {
	if agent {
		return fmt.Sprintf("%s-a%d", c.network, i)
	}
	return fmt.Sprintf("%s-m%d", c.network, i)
}

func (c *dockerCluster) ip(i int, agent bool) string {
	if agent {
		return fmt.Sprintf("%s.%d", c.subnet, 50+i)
	}
	return fmt.Sprintf("%s.%d", c.subnet, 10+i)
}

func (c *dockerCluster) Tier() string          { return "docker" }
func (c *dockerCluster) Masters() int          { return c.o.Masters }
func (c *dockerCluster) Agents() int           { return c.o.Agents }
func (c *dockerCluster) MasterID(i int) string { return fmt.Sprintf("m%d", i) }
func (c *dockerCluster) MasterDataDir(i int) string {
	return filepath.Join(c.o.Dir, fmt.Sprintf("m%d", i))
}
func (c *dockerCluster) TaskCommand(secs int) string { return fmt.Sprintf("/agora sleep %d", secs) }
func (c *dockerCluster) AgoraPath() string           { return "/agora" }

// AgentAddr maps an agent container's hostname (its name, which only the
// network's own DNS resolves) to its address on the network.
func (c *dockerCluster) AgentAddr(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	for i := 0; i < c.o.Agents; i++ {
		if host == c.name(i, true) {
			return net.JoinHostPort(c.ip(i, true), port)
		}
	}
	return hostport
}

func (c *dockerCluster) MasterURLs() []string {
	var out []string
	for i := 0; i < c.o.Masters; i++ {
		out = append(out, "http://"+c.ip(i, false)+":7100")
	}
	return out
}

func (c *dockerCluster) joins() string {
	var js []string
	for i := 0; i < c.o.Masters; i++ {
		js = append(js, c.ip(i, false)+":7300")
	}
	return strings.Join(js, ",")
}

func (c *dockerCluster) start(ctx context.Context, i int, agent bool) error {
	name := c.name(i, agent)
	c.mu.Lock()
	created := c.created[name]
	c.mu.Unlock()
	if created {
		_, err := c.docker(ctx, "start", name)
		return err
	}
	ip := c.ip(i, agent)
	host := filepath.Join(c.o.Dir, fmt.Sprintf("m%d", i))
	args := []string{"run", "-d", "--name", name, "--hostname", name, "--network", c.network, "--ip", ip,
		"-v", host + ":/data", c.image}
	if agent {
		host = filepath.Join(c.o.Dir, fmt.Sprintf("a%d", i))
		args[len(args)-2] = host + ":/data"
		args = append(args, "agent", "--id", fmt.Sprintf("a%d", i), "--data-dir", "/data", "--gossip", ip+":7400",
			"--join", c.joins(), "--gossip-profile", "local",
			"--resources", fmt.Sprintf("cpus:4;mem:4096;disk:8192;ports:[%d-%d]", 31000+100*i, 31099+100*i))
	} else {
		args = append(args, "master", "--id", c.MasterID(i), "--data-dir", "/data",
			"--http", ip+":7100", "--raft", ip+":7200", "--gossip", ip+":7300", "--join", c.joins(),
			"--bootstrap-expect", fmt.Sprint(c.o.Masters), "--gossip-profile", "local", "--raft-profile", "fast")
	}
	if err := os.MkdirAll(host, 0o755); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if _, err := c.docker(ctx, args...); err != nil {
		return err
	}
	c.mu.Lock()
	c.created[name] = true
	c.mu.Unlock()
	return nil
}

func (c *dockerCluster) running(name string) bool {
	out, err := c.docker(context.Background(), "inspect", "-f", "{{.State.Running}}", name)
	return err == nil && out == "true"
}

func (c *dockerCluster) StartMaster(ctx context.Context, i int) error {
	if c.running(c.name(i, false)) {
		return nil
	}
	return c.start(ctx, i, false)
}

func (c *dockerCluster) StartAgent(ctx context.Context, i int) error {
	if c.running(c.name(i, true)) {
		return nil
	}
	return c.start(ctx, i, true)
}

func (c *dockerCluster) signal(name, sig string) error {
	if !c.running(name) {
		return nil
	}
	_, err := c.docker(context.Background(), "kill", "--signal", sig, name)
	if err == nil {
		for deadline := time.Now().Add(15 * time.Second); c.running(name) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return err
}

func (c *dockerCluster) KillMaster(i int) error {
	_, _ = c.docker(context.Background(), "unpause", c.name(i, false))
	return c.signal(c.name(i, false), "KILL")
}
func (c *dockerCluster) KillAgent(i int) error { return c.signal(c.name(i, true), "KILL") }

func (c *dockerCluster) StopMaster(i int) error {
	return c.stop(context.Background(), c.name(i, false))
}

// stop sends SIGTERM and waits stopTimeout before docker kills the
// container; a container that had to be killed (exit code 137) is reported
// with ErrSlowStop.
func (c *dockerCluster) stop(ctx context.Context, name string) error {
	if !c.running(name) {
		return nil // killed already: nothing to stop
	}
	if _, err := c.docker(ctx, "kill", "--signal", "TERM", name); err != nil {
		return err
	}
	if c.waitStopped(name, stopTimeout) {
		return nil
	}
	// Still running: SIGQUIT makes the Go runtime write every goroutine's
	// stack to stderr (the container's log) before it exits, so the hang
	// can be read afterwards.
	_, _ = c.docker(ctx, "kill", "--signal", "QUIT", name)
	if !c.waitStopped(name, 3*time.Second) {
		_, _ = c.docker(ctx, "kill", "--signal", "KILL", name)
	}
	return fmt.Errorf("%w: %s still ran %s after SIGTERM (goroutine dump in its log)", ErrSlowStop, name, stopTimeout)
}

// waitStopped polls until the container no longer runs, up to limit.
func (c *dockerCluster) waitStopped(name string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for c.running(name) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func (c *dockerCluster) WipeMaster(i int) error {
	if c.running(c.name(i, false)) {
		return fmt.Errorf("chaos: wipe m%d: still running", i)
	}
	dir := c.MasterDataDir(i)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return os.MkdirAll(dir, 0o755)
}

func (c *dockerCluster) PauseMaster(i int) error {
	_, err := c.docker(context.Background(), "pause", c.name(i, false))
	return err
}

func (c *dockerCluster) ResumeMaster(i int) error {
	_, err := c.docker(context.Background(), "unpause", c.name(i, false))
	return err
}

func (c *dockerCluster) Isolate(i int, agent bool) error {
	name := c.name(i, agent)
	if _, err := c.docker(context.Background(), "network", "disconnect", "--force", c.network, name); err != nil {
		return err
	}
	c.mu.Lock()
	c.isolated[name] = agent
	c.mu.Unlock()
	return nil
}

func (c *dockerCluster) Heal() error {
	c.mu.Lock()
	iso := c.isolated
	c.isolated = map[string]bool{}
	c.mu.Unlock()
	var errs []error
	for name := range iso {
		ip := ""
		for i := 0; i < c.o.Masters+c.o.Agents; i++ {
			if c.name(i, false) == name {
				ip = c.ip(i, false)
			}
			if c.name(i, true) == name {
				ip = c.ip(i, true)
			}
		}
		if _, err := c.docker(context.Background(), "network", "connect", "--ip", ip, c.network, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *dockerCluster) Close() error {
	_ = c.Heal()
	ctx := context.Background()
	for i := 0; i < c.o.Masters; i++ {
		_, _ = c.docker(ctx, "unpause", c.name(i, false))
	}
	// Masters first, all at once, and agents only once they are down: a
	// leader outliving the agents would mark them unreachable and commit
	// LOST statuses no framework is left to hear.
	var wg sync.WaitGroup
	stopErrs := make([]error, c.o.Masters)
	for i := 0; i < c.o.Masters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopErrs[i] = c.stop(ctx, c.name(i, false))
		}()
	}
	wg.Wait()
	for i := 0; i < c.o.Masters; i++ {
		c.saveLogs(ctx, c.name(i, false), fmt.Sprintf("m%d.log", i))
		_, _ = c.docker(ctx, "rm", "-f", c.name(i, false))
	}
	for i := 0; i < c.o.Agents; i++ {
		c.saveLogs(ctx, c.name(i, true), fmt.Sprintf("a%d.log", i))
		_, _ = c.docker(ctx, "rm", "-f", c.name(i, true))
	}
	_, err := c.docker(ctx, "network", "rm", c.network)
	return errors.Join(append(stopErrs, err)...)
}

func (c *dockerCluster) saveLogs(ctx context.Context, name, file string) {
	out, err := c.docker(ctx, "logs", name)
	if err == nil {
		_ = os.WriteFile(filepath.Join(c.o.Dir, file), []byte(out+"\n"), 0o644)
	}
}
