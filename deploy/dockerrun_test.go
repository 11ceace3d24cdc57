//go:build docker

package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// A runner brings the cluster of docker-compose.yml up and down.
type runner interface {
	up() error
	stop(service string) error
	// container is the id or name of a service's container.
	container(service string) (string, error)
	down() error
	logs() string
}

// composeRunner drives docker-compose.yml with docker-compose (v1) or the
// `docker compose` plugin.
type composeRunner struct {
	compose []string
	project string
	env     []string
}

func (c *composeRunner) dc(args ...string) (string, error) {
	all := append(append(append([]string{}, c.compose[1:]...), "-p", c.project, "-f", "docker-compose.yml"), args...)
	return run(context.Background(), c.env, c.compose[0], all...)
}

func (c *composeRunner) up() error { _, err := c.dc("up", "-d"); return err }
func (c *composeRunner) stop(s string) error {
	_, err := c.dc("stop", "--timeout", "30", s)
	return err
}
func (c *composeRunner) container(s string) (string, error) {
	id, err := c.dc("ps", "-q", s)
	if err == nil && strings.TrimSpace(id) == "" {
		err = fmt.Errorf("no container for %s", s)
	}
	return strings.TrimSpace(id), err
}
func (c *composeRunner) down() error {
	_, err := c.dc("down", "-v", "--timeout", "20")
	return err
}
func (c *composeRunner) logs() string {
	out, _ := c.dc("logs", "--no-color", "--tail", "40")
	return out
}

// dockerRunner runs the same file with plain `docker run` where no compose
// is installed: it reads the services of docker-compose.yml (image,
// command, environment, volumes, ports, hostname; YAML anchors and
// ${VAR:-default} included) and creates a network, the named volumes and
// one container per service, masters first.
type dockerRunner struct {
	project string
	env     map[string]string
	file    composeFile
	dir     string
	names   []string
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

var composeVar = regexp.MustCompile(`\$\{(\w+)(?::-([^}]*))?\}`)

func newDockerRunner(project string, env []string) (*dockerRunner, error) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		return nil, err
	}
	r := &dockerRunner{project: project, env: map[string]string{}}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		r.env[k] = v
	}
	if err := yaml.Unmarshal(raw, &r.file); err != nil {
		return nil, fmt.Errorf("docker-compose.yml: %w", err)
	}
	if r.dir, err = filepath.Abs("."); err != nil {
		return nil, err
	}
	for name := range r.file.Services {
		r.names = append(r.names, name)
	}
	// Masters before agents (the file's depends_on), each group by name.
	sort.Slice(r.names, func(i, j int) bool {
		mi, mj := strings.HasPrefix(r.names[i], "master"), strings.HasPrefix(r.names[j], "master")
		if mi != mj {
			return mi
		}
		return r.names[i] < r.names[j]
	})
	return r, nil
}

func (r *dockerRunner) subst(s string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		g := composeVar.FindStringSubmatch(m)
		if v := r.env[g[1]]; v != "" {
			return v
		}
		if v := os.Getenv(g[1]); v != "" {
			return v
		}
		return g[2]
	})
}

func (r *dockerRunner) network() string      { return r.project + "_agora" }
func (r *dockerRunner) name(s string) string { return r.project + "_" + s }

func (r *dockerRunner) docker(args ...string) (string, error) {
	return run(context.Background(), nil, "docker", args...)
}

func (r *dockerRunner) up() error {
	if _, err := r.docker("network", "create", "--driver", "bridge", r.network()); err != nil {
		return err
	}
	for _, s := range r.names {
		svc := r.file.Services[s]
		args := []string{"run", "-d", "--name", r.name(s), "--network", r.network(), "--network-alias", s}
		if svc.Hostname != "" {
			args = append(args, "--hostname", svc.Hostname)
		}
		keys := make([]string, 0, len(svc.Environment))
		for k := range svc.Environment {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			args = append(args, "-e", k+"="+r.subst(svc.Environment[k]))
		}
		for _, v := range svc.Volumes {
			src, rest, _ := strings.Cut(r.subst(v), ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				src = filepath.Join(r.dir, src)
			} else {
				src = r.project + "_" + src
			}
			args = append(args, "-v", src+":"+rest)
		}
		for _, p := range svc.Ports {
			args = append(args, "-p", r.subst(p))
		}
		args = append(args, r.subst(svc.Image))
		args = append(args, svc.Command...)
		if _, err := r.docker(args...); err != nil {
			return err
		}
	}
	return nil
}

func (r *dockerRunner) stop(s string) error {
	_, err := r.docker("stop", "-t", "30", r.name(s))
	return err
}

func (r *dockerRunner) container(s string) (string, error) { return r.name(s), nil }

func (r *dockerRunner) down() error {
	var errs []string
	for _, s := range r.names {
		if out, err := r.docker("rm", "-f", "-v", r.name(s)); err != nil && !strings.Contains(err.Error()+out, "No such container") {
			errs = append(errs, err.Error())
		}
	}
	if _, err := r.docker("network", "rm", r.network()); err != nil {
		errs = append(errs, err.Error())
	}
	for v := range r.file.Volumes {
		if _, err := r.docker("volume", "rm", "-f", r.project+"_"+v); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("docker down: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (r *dockerRunner) logs() string {
	var b strings.Builder
	for _, s := range r.names {
		out, _ := run(context.Background(), nil, "docker", "logs", "--tail", "40", r.name(s))
		fmt.Fprintf(&b, "--- %s\n%s", s, out)
	}
	return b.String()
}
