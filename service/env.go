package service

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Peer is one placed pod as its peers see it.
type Peer struct {
	// Index of the pod within its type.
	Index int
	// Host is the agent's hostname.
	Host string
	// Ports maps port names to the pod's ports.
	Ports map[string]uint64
}

// addr is host:port of the named port, or the host when the pod has no
// such port.
func (p Peer) addr(port string) string {
	if n, ok := p.Ports[port]; ok {
		return net.JoinHostPort(p.Host, strconv.FormatUint(n, 10))
	}
	return p.Host
}

// PodEnvInput is everything a pod's environment is made of.
type PodEnvInput struct {
	// Service is the service name.
	Service string
	// Pod is the pod type; its Env templates are expanded.
	Pod *PodSpec
	// Count is the pod type's target count.
	Count int
	// Self is the pod being launched.
	Self Peer
	// Peers are the placed pods of the type with index < Count, Self
	// included, in index order.
	Peers []Peer
}

// Variables agora sets in every pod's environment; a spec's env may not set
// them.
const (
	EnvService   = "AGORA_SERVICE"
	EnvPodType   = "POD_TYPE"
	EnvPodIndex  = "POD_INDEX"
	EnvPodName   = "POD_NAME"
	EnvPodHost   = "POD_HOST"
	EnvPodCount  = "POD_COUNT"
	EnvVolume    = "VOLUME_PATH"
	EnvPeers     = "AGORA_PEERS"
	envPort      = "PORT_"        // PORT_<NAME>: the named port
	envPeersPort = "AGORA_PEERS_" // AGORA_PEERS_<NAME>: index=host:port of every peer
)

func reservedEnv(k string) bool {
	switch k {
	case EnvService, EnvPodType, EnvPodIndex, EnvPodName, EnvPodHost, EnvPodCount, EnvVolume, EnvPeers:
		return true
	}
	return strings.HasPrefix(k, envPort) || strings.HasPrefix(k, envPeersPort)
}

// PodName is the name of pod index of type pod in service: <service>-<pod>-<index>.
func PodName(service, pod string, index int) string {
	return fmt.Sprintf("%s-%s-%d", service, pod, index)
}

// Env returns a pod's environment:
//
//	AGORA_SERVICE       the service name
//	POD_TYPE            the pod type
//	POD_INDEX           the pod's index, 0 ..
//	POD_NAME            <service>-<pod>-<index>
//	POD_HOST            the agent's hostname
//	POD_COUNT           the pod type's target count
//	PORT_<NAME>         each named port (name upper-cased)
//	VOLUME_PATH         the volume's path in the sandbox (with a volume)
//	AGORA_PEERS         index=host:port of every placed peer on the first
//	                    port (host alone without ports), comma-separated
//	AGORA_PEERS_<NAME>  the same on each named port
//
// and the spec's own variables, whose values are text/template templates
// over the pod (see docs/service-spec.md): {{.Index}}, {{.Name}},
// {{.Service}}, {{.Type}}, {{.Host}}, {{.Count}}, {{.Volume}},
// {{port "http"}}, {{peers "http"}} (index=host:port,...),
// {{addrs "http"}} (a list of host:port), {{prefix "nats://" LIST}},
// {{join LIST ","}}.
func Env(in PodEnvInput) (map[string]string, error) {
	p := in.Pod
	name := PodName(in.Service, p.Name, in.Self.Index)
	env := map[string]string{
		EnvService:  in.Service,
		EnvPodType:  p.Name,
		EnvPodIndex: strconv.Itoa(in.Self.Index),
		EnvPodName:  name,
		EnvPodHost:  in.Self.Host,
		EnvPodCount: strconv.Itoa(in.Count),
	}
	first := ""
	if len(p.Resources.Ports) > 0 {
		first = p.Resources.Ports[0]
	}
	env[EnvPeers] = peerList(in.Peers, first)
	for _, n := range p.Resources.Ports {
		up := strings.ToUpper(n)
		env[envPort+up] = strconv.FormatUint(in.Self.Ports[n], 10)
		env[envPeersPort+up] = peerList(in.Peers, n)
	}
	volume := ""
	if p.Volume != nil {
		volume = p.Volume.Path
		env[EnvVolume] = volume
	}
	tmpl := p.Env
	data := templateData{Service: in.Service, Type: p.Name, Index: in.Self.Index, Name: name, Host: in.Self.Host, Count: in.Count, Volume: volume}
	for _, k := range slices.Sorted(maps.Keys(tmpl)) {
		v, err := expand(k, tmpl[k], data, in.Self, in.Peers, p.Resources.Ports)
		if err != nil {
			return nil, err
		}
		env[k] = v
	}
	return env, nil
}

func peerList(peers []Peer, port string) string {
	parts := make([]string, len(peers))
	for i, q := range peers {
		parts[i] = strconv.Itoa(q.Index) + "=" + q.addr(port)
	}
	return strings.Join(parts, ",")
}

type templateData struct {
	Service, Type, Name, Host, Volume string
	Index, Count                      int
}

func expand(key, text string, data templateData, self Peer, peers []Peer, portNames []string) (string, error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	known := func(port string) error {
		if !slices.Contains(portNames, port) {
			return fmt.Errorf("no port named %q", port)
		}
		return nil
	}
	funcs := template.FuncMap{
		"port": func(n string) (uint64, error) {
			if err := known(n); err != nil {
				return 0, err
			}
			return self.Ports[n], nil
		},
		"peers": func(n string) (string, error) {
			if err := known(n); err != nil {
				return "", err
			}
			return peerList(peers, n), nil
		},
		"addrs": func(n string) ([]string, error) {
			if err := known(n); err != nil {
				return nil, err
			}
			out := make([]string, len(peers))
			for i, q := range peers {
				out[i] = q.addr(n)
			}
			return out, nil
		},
		"prefix": func(pre string, list []string) []string {
			out := make([]string, len(list))
			for i, s := range list {
				out[i] = pre + s
			}
			return out
		},
		"join": func(list []string, sep string) string { return strings.Join(list, sep) },
	}
	t, err := template.New(key).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("env %s: %v", key, oneLine(err))
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("env %s: %v", key, oneLine(err))
	}
	return b.String(), nil
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// checkTemplates expands p's env once with made-up addresses, so a bad
// template fails Parse rather than a launch.
func checkTemplates(service string, p *PodSpec) error {
	ports := map[string]uint64{}
	for i, n := range p.Resources.Ports {
		ports[n] = uint64(31000 + i)
	}
	self := Peer{Index: 0, Host: "agent.example", Ports: ports}
	_, err := Env(PodEnvInput{Service: service, Pod: p, Count: 1, Self: self, Peers: []Peer{self}})
	return err
}
