package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/resources"
)

// ErrInvalidSpec is wrapped by every error of Parse and Validate.
var ErrInvalidSpec = errors.New("service: invalid spec")

// MaxCount caps a pod type's count (and Scale's argument).
const MaxCount = 1000

// Readiness defaults, in seconds.
const (
	DefaultReadinessInterval = 5
	DefaultReadinessTimeout  = 5
	DefaultReadinessDeadline = 300
)

// AgentPlacement is the value of Placement.OnePer that means "at most one pod
// of this type per agent".
const AgentPlacement = "agent"

// Spec is a service specification: what `agora service run FILE` reads.
// Its JSON form is documented in docs/service-spec.md; Parse reads it.
type Spec struct {
	// Name identifies the service; it prefixes every pod, task and volume
	// name: [a-z][a-z0-9-]{0,39}, no trailing '-'.
	Name string `json:"name"`
	// Role is the role the service reserves resources for.
	Role string `json:"role"`
	// Pods are the pod types, deployed in this order.
	Pods []PodSpec `json:"pods"`
}

// PodSpec is one pod type: Count identical pods, each with its own
// reservation, ports and volume.
type PodSpec struct {
	// Name is the pod type: [a-z][a-z0-9-]{0,19}, no trailing '-'.
	Name string `json:"name"`
	// Count is the number of pods (0 is allowed: scaled to nothing).
	Count int `json:"count"`
	// Resources are reserved for each pod. They cannot change in Update.
	Resources Resources `json:"resources"`
	// Volume is an optional persistent volume carved from Resources.Disk.
	Volume *VolumeSpec `json:"volume,omitempty"`
	// Command runs with /bin/sh -c in the pod's sandbox.
	Command string `json:"command"`
	// Env adds variables to the pod environment; values are templates
	// (see Env).
	Env map[string]string `json:"env,omitempty"`
	// Readiness says when a launched pod is ready; without it a pod is
	// ready as soon as its task is RUNNING.
	Readiness *Readiness `json:"readiness,omitempty"`
	// Placement constrains where pods of this type go.
	Placement Placement `json:"placement,omitzero"`
	// KillGraceSeconds is the time between SIGTERM and SIGKILL when a pod's
	// task is killed (0: the master's default).
	KillGraceSeconds float64 `json:"kill_grace_seconds,omitempty"`
}

// Resources are what one pod reserves. Scalars are in the units of package
// resources: cpus, mem and disk in MiB.
type Resources struct {
	CPUs float64 `json:"cpus"`
	Mem  float64 `json:"mem"`
	Disk float64 `json:"disk,omitempty"`
	// Ports are named ports, each taken from the offer's port ranges when
	// the pod is first placed and kept for the pod's life. In JSON either a
	// list of names or a count N (names "0" .. "N-1").
	Ports Ports `json:"ports,omitempty"`
}

// Ports are the names of a pod's ports, in order.
type Ports []string

// UnmarshalJSON accepts a list of names or a non-negative count.
func (p *Ports) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '[' && b[0] != 'n' {
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return fmt.Errorf("ports: want a list of names or a count, got %s", b)
		}
		if n < 0 || n > 100 {
			return fmt.Errorf("ports: count %d is not in [0, 100]", n)
		}
		names := make(Ports, n)
		for i := range names {
			names[i] = strconv.Itoa(i)
		}
		*p = names
		return nil
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("ports: want a list of names or a count, got %s", b)
	}
	*p = names
	return nil
}

// VolumeSpec is a pod's persistent volume.
type VolumeSpec struct {
	// Size in MiB; it counts against Resources.Disk.
	Size float64 `json:"size"`
	// Path is where the volume appears, relative to the task's sandbox.
	Path string `json:"path"`
}

// Readiness is a pod's readiness check. Exactly one of Command and HTTP is
// set. The driver runs it (or reads the agent's check result) and reports
// with State.MarkReady; a pod not ready within DeadlineSeconds of RUNNING
// is reported with State.MarkNotReady.
type Readiness struct {
	// Command is run with /bin/sh -c in the pod's environment; exit 0 is ready.
	Command string `json:"command,omitempty"`
	// HTTP is a GET to the pod's address on a named port; 2xx is ready.
	HTTP *HTTPCheck `json:"http,omitempty"`
	// IntervalSeconds between checks (default 5).
	IntervalSeconds float64 `json:"interval_seconds,omitempty"`
	// TimeoutSeconds of one check (default 5).
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// DeadlineSeconds after RUNNING within which the pod must be ready
	// (default 300).
	DeadlineSeconds float64 `json:"deadline_seconds,omitempty"`
}

// HTTPCheck is an HTTP readiness check.
type HTTPCheck struct {
	// Port names one of the pod's ports.
	Port string `json:"port"`
	// Path is the request path; it starts with '/'.
	Path string `json:"path"`
}

// Placement constrains where the pods of one type go.
type Placement struct {
	// OnePer is "agent" (at most one pod of this type per agent) or the
	// name of an agent attribute such as "rack" (at most one per value;
	// agents without the attribute are not used). Empty: no constraint.
	OnePer string `json:"one_per,omitempty"`
}

var (
	serviceNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$`)
	podNameRE     = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$`)
	portNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,31}$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	attrNameRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Parse reads a JSON service spec strictly: unknown fields, trailing data,
// wrong types and every rule of Validate are errors, each one line that
// names the pod and field. Defaults (readiness interval, timeout, deadline)
// are filled in.
func Parse(b []byte) (*Spec, error) {
	var top struct {
		Name string            `json:"name"`
		Role string            `json:"role"`
		Pods []json.RawMessage `json:"pods"`
	}
	if err := decodeStrict(b, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	s := &Spec{Name: top.Name, Role: top.Role}
	for i, raw := range top.Pods {
		p := PodSpec{Count: math.MinInt}
		if err := decodeStrict(raw, &p); err != nil {
			return nil, fmt.Errorf("%w: pods[%d]%s: %v", ErrInvalidSpec, i, quotedName(raw), err)
		}
		if p.Count == math.MinInt {
			return nil, fmt.Errorf("%w: pod %q: count is missing", ErrInvalidSpec, p.Name)
		}
		s.Pods = append(s.Pods, p)
	}
	s.fillDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// quotedName names a pod in a decode error when its name can be read.
func quotedName(raw json.RawMessage) string {
	var n struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &n) == nil && n.Name != "" {
		return fmt.Sprintf(" %q", n.Name)
	}
	return ""
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(b, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the spec")
	}
	return nil
}

// jsonError turns encoding/json errors into short, positioned messages.
func jsonError(b []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(b, syn.Offset)
		return fmt.Errorf("line %d column %d: %v", line, col, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		return fmt.Errorf("%s: want %s, got %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.EOF):
		return errors.New("empty spec")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("spec ends early")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(k string) string {
	switch k {
	case "float64", "int":
		return "number"
	case "slice":
		return "list"
	case "struct", "map", "ptr":
		return "object"
	}
	return k
}

func position(b []byte, off int64) (line, col int) {
	line, col = 1, 1
	// off counts the bytes read, the offending one included.
	for i := 0; i < int(off)-1 && i < len(b); i++ {
		if b[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

func (s *Spec) fillDefaults() {
	for i := range s.Pods {
		r := s.Pods[i].Readiness
		if r == nil {
			continue
		}
		if r.IntervalSeconds == 0 {
			r.IntervalSeconds = DefaultReadinessInterval
		}
		if r.TimeoutSeconds == 0 {
			r.TimeoutSeconds = DefaultReadinessTimeout
		}
		if r.DeadlineSeconds == 0 {
			r.DeadlineSeconds = DefaultReadinessDeadline
		}
	}
}

// Validate checks every rule of the spec format; errors wrap ErrInvalidSpec.
func (s *Spec) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Name == "":
		return bad("name is missing")
	case !serviceNameRE.MatchString(s.Name):
		return bad("name %q: want [a-z][a-z0-9-]{0,39} ending in a letter or digit", s.Name)
	case s.Role == "":
		return bad("role is missing")
	case !resources.ValidReservationRole(s.Role):
		return bad("role %q: want [a-z][a-z0-9_.-]{0,63}", s.Role)
	case len(s.Pods) == 0:
		return bad("no pods")
	}
	seen := map[string]bool{}
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Name == "" {
			return bad("pods[%d]: name is missing", i)
		}
		if !podNameRE.MatchString(p.Name) {
			return bad("pod name %q: want [a-z][a-z0-9-]{0,19} ending in a letter or digit", p.Name)
		}
		if seen[p.Name] {
			return bad("pod name %q is used twice", p.Name)
		}
		seen[p.Name] = true
		if err := p.validate(s.Name); err != nil {
			return bad("pod %q: %v", p.Name, err)
		}
	}
	return nil
}

func (p *PodSpec) validate(service string) error {
	if p.Count < 0 {
		return fmt.Errorf("count %d is negative", p.Count)
	}
	if p.Count > MaxCount {
		return fmt.Errorf("count %d exceeds %d", p.Count, MaxCount)
	}
	r := p.Resources
	for _, sc := range []struct {
		name     string
		v        float64
		positive bool
	}{{"cpus", r.CPUs, true}, {"mem", r.Mem, true}, {"disk", r.Disk, false}} {
		switch {
		case sc.v < 0:
			return fmt.Errorf("resources.%s %g is negative", sc.name, sc.v)
		case sc.positive && sc.v == 0:
			return fmt.Errorf("resources.%s must be positive", sc.name)
		case sc.v > resources.MaxScalar:
			return fmt.Errorf("resources.%s %g exceeds %g", sc.name, sc.v, float64(resources.MaxScalar))
		case sc.v > 0 && resources.Scalar(sc.name, sc.v).IsEmpty():
			return fmt.Errorf("resources.%s %g is below 0.001", sc.name, sc.v)
		}
	}
	ports := map[string]bool{}
	for _, n := range r.Ports {
		if !portNameRE.MatchString(n) {
			return fmt.Errorf("port name %q: want [a-z0-9][a-z0-9_]{0,31}", n)
		}
		if ports[n] {
			return fmt.Errorf("port name %q is used twice", n)
		}
		ports[n] = true
	}
	if v := p.Volume; v != nil {
		switch {
		case v.Size <= 0:
			return fmt.Errorf("volume.size %g must be positive", v.Size)
		case v.Size > r.Disk:
			return fmt.Errorf("volume.size %g MiB is larger than resources.disk %g MiB", v.Size, r.Disk)
		case v.Path == "":
			return errors.New("volume.path is missing")
		case path.IsAbs(v.Path) || path.Clean(v.Path) != v.Path || v.Path == "." || strings.HasPrefix(v.Path, "../") || v.Path == "..":
			return fmt.Errorf("volume.path %q: want a clean path relative to the sandbox, such as \"data\"", v.Path)
		}
	}
	if strings.TrimSpace(p.Command) == "" {
		return errors.New("command is missing")
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("env name %q: want [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if reservedEnv(k) {
			return fmt.Errorf("env %s is set by agora and cannot be overridden", k)
		}
	}
	if err := checkTemplates(service, p); err != nil {
		return err
	}
	if rd := p.Readiness; rd != nil {
		switch {
		case rd.Command == "" && rd.HTTP == nil:
			return errors.New("readiness has neither a command nor an http check")
		case rd.Command != "" && rd.HTTP != nil:
			return errors.New("readiness has both a command and an http check")
		case rd.HTTP != nil && rd.HTTP.Path == "":
			return errors.New("readiness.http.path is missing")
		case rd.HTTP != nil && !strings.HasPrefix(rd.HTTP.Path, "/"):
			return fmt.Errorf("readiness.http.path %q must start with '/'", rd.HTTP.Path)
		case rd.HTTP != nil && !ports[rd.HTTP.Port]:
			return fmt.Errorf("readiness.http.port %q is not one of the pod's ports", rd.HTTP.Port)
		case rd.IntervalSeconds < 0 || rd.TimeoutSeconds < 0 || rd.DeadlineSeconds < 0:
			return errors.New("readiness interval, timeout and deadline must not be negative")
		}
	}
	if g := p.KillGraceSeconds; g < 0 {
		return fmt.Errorf("kill_grace_seconds %g is negative", g)
	}
	if o := p.Placement.OnePer; o != "" && o != AgentPlacement && !attrNameRE.MatchString(o) {
		return fmt.Errorf("placement.one_per %q: want \"agent\" or an attribute name", o)
	}
	return nil
}

// Pod returns the pod type named name.
func (s *Spec) Pod(name string) (*PodSpec, bool) {
	for i := range s.Pods {
		if s.Pods[i].Name == name {
			return &s.Pods[i], true
		}
	}
	return nil, false
}

// Clone returns a deep copy of s.
func (s *Spec) Clone() *Spec {
	c := *s
	c.Pods = make([]PodSpec, len(s.Pods))
	for i, p := range s.Pods {
		p.Resources.Ports = slices.Clone(p.Resources.Ports)
		p.Env = maps.Clone(p.Env)
		if p.Volume != nil {
			v := *p.Volume
			p.Volume = &v
		}
		if p.Readiness != nil {
			r := *p.Readiness
			if r.HTTP != nil {
				h := *r.HTTP
				r.HTTP = &h
			}
			p.Readiness = &r
		}
		c.Pods[i] = p
	}
	return &c
}

// reserved returns what one pod of type p reserves, ports included.
func (p *PodSpec) reserved(ports []uint64) resources.Resources {
	r := resources.Scalar("cpus", p.Resources.CPUs).
		Add(resources.Scalar("mem", p.Resources.Mem)).
		Add(resources.Scalar("disk", p.Resources.Disk))
	if len(ports) > 0 {
		r = r.Add(resources.ValuesToRanges("ports", ports))
	}
	return r
}

// taskResources is what a pod's task takes from its reservation: the
// reservation less the volume's disk, which CREATE already took.
func (p *PodSpec) taskResources(ports []uint64) resources.Resources {
	r := p.reserved(ports)
	if p.Volume != nil {
		r, _ = r.Subtract(resources.Scalar("disk", p.Volume.Size))
	}
	return r
}

// sameFootprint reports whether a and b reserve the same resources and
// volume, which Update requires of existing pod types.
func sameFootprint(a, b *PodSpec) bool {
	if a.Resources.CPUs != b.Resources.CPUs || a.Resources.Mem != b.Resources.Mem ||
		a.Resources.Disk != b.Resources.Disk || !slices.Equal(a.Resources.Ports, b.Resources.Ports) {
		return false
	}
	if (a.Volume == nil) != (b.Volume == nil) {
		return false
	}
	return a.Volume == nil || *a.Volume == *b.Volume
}
