package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// FrameworkPrefix starts the name of every service's framework.
const FrameworkPrefix = "agora-service:"

// Principal is the principal of the services' frameworks.
const Principal = "agora-service"

// FailoverTimeout is the services' frameworks' failover timeout: long, so
// that tasks outlive any scheduler outage short of a week.
const FailoverTimeout = 7 * 24 * time.Hour

var errOutcomeUnknown = client.ErrOutcomeUnknown

// Config configures a Host.
type Config struct {
	// Masters are the masters to talk to (the hosting master's own URL).
	Masters []string
	// HTTPClient, optional, carries the calls.
	HTTPClient *http.Client
	// Logger, optional.
	Logger *slog.Logger
	// Token, optional, is the bearer token of the Host and its services'
	// frameworks (the hosting master's internal credential).
	Token string
}

// Host runs one driver per service for as long as its Run's context
// lasts (the hosting master's leadership).
type Host struct {
	cfg Config
	log *slog.Logger
	c   *client.Client
	ctx context.Context

	ready chan struct{}  // closed once the existing services are started
	wg    sync.WaitGroup // the drivers' framework.Run goroutines

	mu       sync.Mutex
	services map[string]*driver
	fids     map[string]string // service -> framework id
}

// NewHost returns a Host; call Run.
func NewHost(cfg Config) *Host {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "service-scheduler")
	var opts []client.Option
	if cfg.HTTPClient != nil {
		opts = append(opts, client.WithHTTPClient(cfg.HTTPClient))
	}
	opts = append(opts, client.WithLogger(log), client.WithToken(cfg.Token))
	return &Host{
		cfg: cfg, log: log,
		c:        client.New(strings.Join(cfg.Masters, ","), opts...),
		ready:    make(chan struct{}),
		services: map[string]*driver{},
		fids:     map[string]string{},
	}
}

// Run starts a driver for every existing service and waits for ctx to end
// (every driver stops with it).
func (h *Host) Run(ctx context.Context) error {
	h.ctx = ctx
	defer h.wg.Wait()
	for {
		fws, err := h.c.Operator.ListFrameworks(ctx, connect.NewRequest(&agorav1.ListFrameworksRequest{}))
		if err == nil {
			for _, fw := range fws.Msg.GetFrameworks() {
				name, ok := strings.CutPrefix(fw.GetInfo().GetName(), FrameworkPrefix)
				if !ok || fw.GetState() == agorav1.FrameworkState_FRAMEWORK_STATE_TORN_DOWN {
					continue
				}
				h.start(name, fw.GetId(), fw.GetInfo().GetRoles(), nil)
			}
			break
		}
		h.log.Warn("listing the service frameworks failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	h.mu.Lock()
	h.log.Info("service scheduler started", "services", len(h.services))
	h.mu.Unlock()
	close(h.ready)
	<-ctx.Done()
	return nil
}

// start runs a driver for service name (framework fid, "" for a new one).
func (h *Host) start(name, fid string, roles []string, spec *service.Spec) *driver {
	dr := &driver{
		h: h, name: name, spec: spec, fid: fid,
		log:       h.log.With("service", name),
		loaded:    make(chan struct{}),
		killsSent: map[string]time.Time{},
		checks:    map[string]context.CancelFunc{},
	}
	h.mu.Lock()
	h.services[name] = dr
	if fid != "" {
		h.fids[name] = fid
	}
	h.mu.Unlock()
	info := &agorav1.FrameworkInfo{
		Id:                     fid,
		Name:                   FrameworkPrefix + name,
		Principal:              Principal,
		Roles:                  roles,
		FailoverTimeoutSeconds: FailoverTimeout.Seconds(),
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		err := framework.Run(h.ctx, framework.Config{
			Masters: h.cfg.Masters, Info: info, HTTPClient: h.cfg.HTTPClient, Logger: dr.log, Token: h.cfg.Token,
		}, dr)
		if err != nil && !errors.Is(err, framework.ErrTornDown) {
			dr.log.Warn("service framework stopped", "err", err)
		}
		dr.markLoaded(fmt.Errorf("scheduler: service %s stopped: %w", name, err))
		h.mu.Lock()
		if h.services[name] == dr && (errors.Is(err, framework.ErrTornDown) || dr.done) {
			delete(h.services, name)
			delete(h.fids, name)
		}
		h.mu.Unlock()
	}()
	return dr
}

func (h *Host) noteFramework(name, fid string) {
	h.mu.Lock()
	h.fids[name] = fid
	h.mu.Unlock()
}

func (h *Host) waitReady(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-ctx.Done():
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the service scheduler is starting: %w", ctx.Err()))
	}
}

// RunService starts a new service and returns once its first State is in
// Raft: its framework id and the record's version.
func (h *Host) RunService(ctx context.Context, spec *service.Spec) (fid string, version uint64, err error) {
	if err := h.waitReady(ctx); err != nil {
		return "", 0, err
	}
	h.mu.Lock()
	_, exists := h.services[spec.Name]
	h.mu.Unlock()
	if exists {
		return "", 0, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("service %s already exists", spec.Name))
	}
	dr := h.start(spec.Name, "", []string{spec.Role}, spec)
	select {
	case <-dr.loaded:
	case <-ctx.Done():
		return "", 0, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("service %s: waiting for its first state: %w", spec.Name, ctx.Err()))
	}
	if dr.loadErr != nil {
		return "", 0, connect.NewError(connect.CodeUnavailable, dr.loadErr)
	}
	dr.mu.Lock()
	defer dr.mu.Unlock()
	return dr.fid, dr.version, nil
}

// Command runs fn on a Clone of service name's State and stores the
// result. NotFound for an unknown service; fn's error changes nothing.
func (h *Host) Command(ctx context.Context, name string, fn func(*service.State) error) (uint64, error) {
	if err := h.waitReady(ctx); err != nil {
		return 0, err
	}
	h.mu.Lock()
	dr, ok := h.services[name]
	h.mu.Unlock()
	if !ok {
		return 0, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %s", name))
	}
	return dr.command(ctx, fn)
}

// State returns a Clone of service name's current State, or false.
func (h *Host) State(name string) (*service.State, bool) {
	h.mu.Lock()
	dr, ok := h.services[name]
	h.mu.Unlock()
	if !ok {
		return nil, false
	}
	st := dr.snapshot()
	return st, st != nil
}

// Services lists the services the host runs, by name.
func (h *Host) Services() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.services))
	for n := range h.services {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Inventory is the reservations and volumes of one role, by agent.
type Inventory struct {
	role         string
	reservations map[string][]service.Reservation
	volumes      map[string][]service.Volume
}

// Fill sets o's Reservations and Volumes from the inventory.
func (inv *Inventory) Fill(o *service.Offer) {
	o.Reservations = inv.reservations[o.AgentID]
	o.Volumes = inv.volumes[o.AgentID]
}

// reservations reads the role's reservations and volumes. Offers do not
// carry them yet (see service.Offer); this is the one place that learns
// them, from the operator API, so it can switch to the offer's fields.
func (h *Host) reservations(role string) (*Inventory, error) {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	res, err := h.c.Operator.ListReservations(ctx, connect.NewRequest(&agorav1.ListReservationsRequest{}))
	if err != nil {
		return nil, fmt.Errorf("scheduler: list reservations: %w", err)
	}
	inv := &Inventory{role: role, reservations: map[string][]service.Reservation{}, volumes: map[string][]service.Volume{}}
	for _, r := range res.Msg.GetReservations() {
		sr, ok, err := service.ReservationFromProto(r, role)
		if err != nil {
			return nil, err
		}
		if ok {
			inv.reservations[r.GetAgentId()] = append(inv.reservations[r.GetAgentId()], sr)
		}
	}
	for _, v := range res.Msg.GetVolumes() {
		if sv, ok := service.VolumeFromProto(v, role); ok {
			inv.volumes[v.GetAgentId()] = append(inv.volumes[v.GetAgentId()], sv)
		}
	}
	return inv, nil
}
