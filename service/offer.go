package service

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Offer is the plan's view of one offer: its free resources, split into
// unreserved and reserved for the service's role, and the reservations and
// volumes of that role on the agent that the offer carries.
//
// The wire Offer does not yet say which reservations and volumes its
// reserved resources belong to (see docs/service-spec.md, "What the master
// must add"); until it does, the driver fills Reservations and Volumes from
// the operator API's ListReservations for the offer's agent.
type Offer struct {
	ID         string
	AgentID    string
	Hostname   string
	Attributes map[string]string
	// Unreserved are the offer's unreserved resources.
	Unreserved resources.Resources
	// Reserved are the offer's resources reserved for the service's role.
	Reserved resources.Resources
	// Reservations of the service's role on the agent.
	Reservations []Reservation
	// Volumes of the service's role on the agent.
	Volumes []Volume
}

// Reservation is a dynamic reservation as the plan sees it.
type Reservation struct {
	ID        string
	Labels    map[string]string
	Resources resources.Resources
}

// Volume is a persistent volume as the plan sees it.
type Volume struct {
	ID            string
	SizeMiB       float64
	ContainerPath string
}

// OfferFromProto converts a wire offer for a service of role. Reservations
// and Volumes are left empty: the wire offer does not carry them yet.
func OfferFromProto(o *agorav1.Offer, role string) (Offer, error) {
	p, err := resourcepb.FromProto(o.GetResources())
	if err != nil {
		return Offer{}, fmt.Errorf("service: offer %s: %w", o.GetId(), err)
	}
	return Offer{
		ID:         o.GetId(),
		AgentID:    o.GetAgentId(),
		Hostname:   o.GetHostname(),
		Attributes: maps.Clone(o.GetAttributes()),
		Unreserved: p[""],
		Reserved:   p[role],
	}, nil
}

// ReservationFromProto converts a reservation of the given role, as the
// operator API lists it; ok is false for another role's.
func ReservationFromProto(r *agorav1.Reservation, role string) (res Reservation, ok bool, err error) {
	if r.GetRole() != role {
		return Reservation{}, false, nil
	}
	p, err := resourcepb.FromProto(r.GetResources())
	if err != nil {
		return Reservation{}, false, fmt.Errorf("service: reservation %s: %w", r.GetId(), err)
	}
	return Reservation{ID: r.GetId(), Labels: maps.Clone(r.GetLabels()), Resources: p[role]}, true, nil
}

// VolumeFromProto converts a volume of the given role; ok is false for
// another role's.
func VolumeFromProto(v *agorav1.Volume, role string) (Volume, bool) {
	if v.GetRole() != role {
		return Volume{}, false
	}
	return Volume{ID: v.GetId(), SizeMiB: v.GetSizeMib(), ContainerPath: v.GetContainerPath()}, true
}

// Reservation labels: a restarted or re-run scheduler re-finds its
// reservations, and the volumes on them, from these alone.
const (
	LabelService  = "agora.service"
	LabelPod      = "agora.pod"
	LabelIndex    = "agora.index"
	LabelInstance = "agora.instance"
	LabelPorts    = "agora.ports"
	LabelVolume   = "agora.volume"
)

// labels are the RESERVE labels of p's placement.
func (s *State) labels(p *Pod) map[string]string {
	l := map[string]string{
		LabelService:  s.Spec.Name,
		LabelPod:      p.Type,
		LabelIndex:    strconv.Itoa(p.Index),
		LabelInstance: p.Instance,
	}
	if len(p.Ports) > 0 {
		ps := make([]string, len(p.Ports))
		for i, n := range p.Ports {
			ps[i] = strconv.FormatUint(n, 10)
		}
		l[LabelPorts] = strings.Join(ps, ",")
	}
	if p.VolumeID != "" {
		l[LabelVolume] = p.VolumeID
	}
	return l
}

// labelled is a reservation of this service, read back from its labels.
type labelled struct {
	Reservation
	pod      string
	index    int
	instance string
	ports    []uint64
	volume   string
}

func (s *State) readLabels(r Reservation) (labelled, bool) {
	l := r.Labels
	if l[LabelService] != s.Spec.Name || l[LabelInstance] == "" {
		return labelled{}, false
	}
	idx, err := strconv.Atoi(l[LabelIndex])
	if err != nil || idx < 0 {
		return labelled{}, false
	}
	out := labelled{Reservation: r, pod: l[LabelPod], index: idx, instance: l[LabelInstance], volume: l[LabelVolume]}
	if ps := l[LabelPorts]; ps != "" {
		for _, f := range strings.Split(ps, ",") {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return labelled{}, false
			}
			out.ports = append(out.ports, n)
		}
	}
	return out, true
}

func (o *Offer) hasVolume(id string) bool {
	for _, v := range o.Volumes {
		if v.ID == id {
			return true
		}
	}
	return false
}

func (o *Offer) reservation(instance string) (Reservation, bool) {
	for _, r := range o.Reservations {
		if r.Labels[LabelInstance] == instance {
			return r, true
		}
	}
	return Reservation{}, false
}
