package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// Operator areas an ACL grants writes in (operator_write).
const (
	AreaRoles     = "roles"     // SetRole, DeleteRole
	AreaDrain     = "drain"     // DrainAgent, UndrainAgent, StopAgent
	AreaRaft      = "raft"      // AddPeer, RemovePeer, TransferLeader
	AreaSnapshots = "snapshots" // SaveSnapshot, RestoreSnapshot
	AreaServices  = "services"  // RunService, ScaleService, ...
	AreaGossip    = "gossip"    // GossipKeyring writes
)

// Areas lists every operator write area.
var Areas = []string{AreaRoles, AreaDrain, AreaRaft, AreaSnapshots, AreaServices, AreaGossip}

// Rules are one principal's permissions in an ACL file.
type Rules struct {
	// RegisterRoles: roles the principal may subscribe frameworks under.
	RegisterRoles []string `json:"register_roles,omitempty"`
	// ReserveRoles and UnreserveRoles: roles it may reserve and unreserve
	// resources for.
	ReserveRoles   []string `json:"reserve_roles,omitempty"`
	UnreserveRoles []string `json:"unreserve_roles,omitempty"`
	// CreateVolumeRoles and DestroyVolumeRoles: roles it may create and
	// destroy persistent volumes in.
	CreateVolumeRoles  []string `json:"create_volume_roles,omitempty"`
	DestroyVolumeRoles []string `json:"destroy_volume_roles,omitempty"`
	// TeardownFrameworks: it may tear down frameworks of other principals
	// (a framework may always tear itself down).
	TeardownFrameworks bool `json:"teardown_frameworks,omitempty"`
	// OperatorRead: it may make the operator service's reads and reach
	// /metrics and /debug/pprof.
	OperatorRead bool `json:"operator_read,omitempty"`
	// OperatorWrite: the operator areas it may change (Areas, or "*").
	OperatorWrite []string `json:"operator_write,omitempty"`
}

// ACLFile is the parsed form of an ACL file.
type ACLFile struct {
	Principals map[string]Rules `json:"principals"`
}

// ACL answers permission questions. A nil *ACL allows everything (agora
// runs open without an ACL file). It is immutable and safe for
// concurrent use.
type ACL struct {
	rules map[string]Rules
	any   Rules // "*": granted to every authenticated principal
}

// Action is a permission that names a role.
type Action int

// Actions on roles.
const (
	RegisterFramework Action = iota
	Reserve
	Unreserve
	CreateVolume
	DestroyVolume
)

func (a Action) String() string {
	switch a {
	case RegisterFramework:
		return "register frameworks under"
	case Reserve:
		return "reserve for"
	case Unreserve:
		return "unreserve for"
	case CreateVolume:
		return "create volumes in"
	case DestroyVolume:
		return "destroy volumes in"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// LoadACLFile reads and parses an ACL file.
func LoadACLFile(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read acl file: %w", err)
	}
	a, err := ParseACL(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ParseACL parses an ACL file (see the package documentation).
func ParseACL(data []byte) (*ACL, error) {
	var f ACLFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: acl file: %w", ErrBadFile, err)
	}
	return NewACL(f)
}

// NewACL checks f and builds an ACL.
func NewACL(f ACLFile) (*ACL, error) {
	if f.Principals == nil {
		return nil, fmt.Errorf("%w: acl file has no \"principals\" object", ErrBadFile)
	}
	a := &ACL{rules: map[string]Rules{}}
	for name, r := range f.Principals {
		if name != "*" {
			if err := validName(name); err != nil {
				return nil, fmt.Errorf("%w: acl: %w", ErrBadFile, err)
			}
		}
		for _, w := range r.OperatorWrite {
			if w != "*" && !slices.Contains(Areas, w) {
				return nil, fmt.Errorf("%w: acl: principal %q: unknown operator_write area %q (want one of %v or *)", ErrBadFile, name, w, Areas)
			}
		}
		for _, list := range [][]string{r.RegisterRoles, r.ReserveRoles, r.UnreserveRoles, r.CreateVolumeRoles, r.DestroyVolumeRoles} {
			if slices.Contains(list, "") {
				return nil, fmt.Errorf("%w: acl: principal %q: empty role name", ErrBadFile, name)
			}
		}
		if name == "*" {
			a.any = r
		} else {
			a.rules[name] = r
		}
	}
	return a, nil
}

// Enabled reports whether the ACL restricts anything (it is non-nil).
func (a *ACL) Enabled() bool { return a != nil }

func grants(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// AllowRole reports whether principal may do act for role.
func (a *ACL) AllowRole(principal string, act Action, role string) bool {
	if a == nil {
		return true
	}
	r := a.rules[principal]
	pick := func(r Rules) []string {
		switch act {
		case RegisterFramework:
			return r.RegisterRoles
		case Reserve:
			return r.ReserveRoles
		case Unreserve:
			return r.UnreserveRoles
		case CreateVolume:
			return r.CreateVolumeRoles
		case DestroyVolume:
			return r.DestroyVolumeRoles
		}
		return nil
	}
	return grants(pick(r), role) || grants(pick(a.any), role)
}

// AllowTeardownOthers reports whether principal may tear down frameworks
// of other principals.
func (a *ACL) AllowTeardownOthers(principal string) bool {
	return a == nil || a.rules[principal].TeardownFrameworks || a.any.TeardownFrameworks
}

// AllowOperatorRead reports whether principal may make operator reads.
func (a *ACL) AllowOperatorRead(principal string) bool {
	return a == nil || a.rules[principal].OperatorRead || a.any.OperatorRead
}

// AllowOperatorWrite reports whether principal may change area.
func (a *ACL) AllowOperatorWrite(principal, area string) bool {
	return a == nil || grants(a.rules[principal].OperatorWrite, area) || grants(a.any.OperatorWrite, area)
}
