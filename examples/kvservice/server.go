package kvservice

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Environment variables the service scheduler sets for each pod (flags of
// `agora kvservice` override them).
const (
	EnvIndex  = "KV_INDEX"
	EnvListen = "KV_LISTEN"
	EnvData   = "KV_DATA"
	EnvPeers  = "KV_PEERS"
)

// Limits on client input.
const (
	// MaxKeyBytes is the longest key; a longer one is refused with 400.
	MaxKeyBytes = 1024
	// MaxValueBytes is the largest value; a larger one is refused with 413.
	MaxValueBytes = 1 << 20
)

// Defaults for the zero values of Config.
const (
	DefaultWriteTimeout = 5 * time.Second
	DefaultPollWait     = 2 * time.Second
)

// Sentinel errors, answered to clients as 503 Service Unavailable.
var (
	// ErrNoQuorum: a write did not become durable on a quorum of the pods
	// within Config.WriteTimeout. The write is durable on the primary and
	// may still be applied later (its outcome is unknown, as with any
	// timeout).
	ErrNoQuorum = errors.New("kvservice: no quorum")
	// ErrRecovering: the primary started without its recovery marker (a new
	// or lost volume) and has not yet copied the log from enough followers.
	ErrRecovering = errors.New("kvservice: primary is recovering its log from the other pods")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("kvservice: shutting down")
)

// HTTP headers of the replication protocol and of forwarded requests.
const (
	hdrLast      = "X-Kv-Last"      // the answering pod's last seq
	hdrCommit    = "X-Kv-Commit"    // the primary's commit seq (a follower: as last heard)
	hdrRecovered = "X-Kv-Recovered" // "1" when the answering primary has recovered
	hdrMismatch  = "X-Kv-Mismatch"  // "1": the requester's log does not match at after/epoch
	hdrReset     = "X-Kv-Reset"     // "1": a recovered primary tells a follower to discard its log
	hdrForwarded = "X-Kv-Forwarded" // index of the follower that forwarded the request
	hdrPrimary   = "X-Kv-Primary"   // the primary's address, on answers from followers
)

// markerFileName marks a primary's log as complete: see doc.go, "Recovery".
const markerFileName = "primary.recovered"

// batch limits of one replication answer.
const (
	maxBatchEntries = 1024
	maxBatchBytes   = 4 << 20
)

// Config configures one pod.
type Config struct {
	// Index is this pod's index in the service, from 0. Pod 0 is the
	// primary; every other pod is a follower.
	Index int

	// Listen is the host:port Run listens on. Serve ignores it.
	Listen string

	// DataDir holds the log (kv.log) and, on the primary, the recovery
	// marker. It is created if missing. It should be the pod's persistent
	// volume.
	DataDir string

	// Peers lists every pod of the service, this one included. It can be
	// replaced at run time with PUT /peers.
	Peers Peers

	// WriteTimeout bounds how long a PUT (and a consistent GET) waits for a
	// quorum. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration

	// PollWait is how long the primary holds a follower's replication
	// request open when there is nothing new. Zero means DefaultPollWait.
	PollWait time.Duration

	// Logger receives the pod's logs; nil discards them.
	Logger *slog.Logger
}

// Server is one pod of the key-value store. Build it with New, then run it
// with Serve (or use Run for both).
type Server struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	primary bool
	marker  string

	// appendMu serializes changes to the log (append, reset) and to
	// entries' length. Taken before mu.
	appendMu sync.Mutex
	data     *logFile

	mu        sync.Mutex
	peers     Peers
	entries   []entry // entries[i].Seq == i+1; elements are never modified
	kv        map[string][]byte
	broken    error         // a failed append: the disk cannot be trusted
	changed   chan struct{} // closed and replaced on every change
	recovered bool          // primary: the log holds every acknowledged write
	epoch     uint64        // primary: the epoch of new entries, once recovered
	acked     map[int]uint64
	caughtUp  bool   // follower: has reached the primary's last seq since start
	heardLast uint64 // follower: the primary's last seq, as last heard
	heardCmt  uint64 // follower: the primary's commit seq, as last heard
}

// Status is the JSON answer of GET /status.
type Status struct {
	Index int    `json:"index"`
	Role  string `json:"role"` // "primary" or "follower"
	Ready bool   `json:"ready"`
	// Recovered (primary only): the primary takes reads and writes.
	Recovered *bool `json:"recovered,omitempty"`
	Peers     Peers `json:"peers"`
	Quorum    int   `json:"quorum"`
	// AppliedSeq is the seq of the last write in this pod's log; every
	// write up to it is applied to what GET returns.
	AppliedSeq uint64 `json:"applied_seq"`
	// CommitSeq is the highest seq durable on a quorum (a follower: as last
	// reported by the primary).
	CommitSeq uint64 `json:"commit_seq"`
	// PrimarySeq (follower only) is the primary's last seq, as last heard.
	PrimarySeq *uint64 `json:"primary_seq,omitempty"`
	// Acked (primary only) is, per follower index, the seq it holds durably.
	Acked map[int]uint64 `json:"acked,omitempty"`
	Keys  int            `json:"keys"`
	Error string         `json:"error,omitempty"`
}

// New opens (or creates) the log in cfg.DataDir and loads it. A torn last
// record is cut off (and logged at WARN).
func New(cfg Config) (*Server, error) {
	if cfg.Index < 0 {
		return nil, fmt.Errorf("kvservice: index %d: must be 0 or more", cfg.Index)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("kvservice: no data directory")
	}
	if _, ok := cfg.Peers[0]; !ok {
		return nil, errors.New("kvservice: peers: index 0 (the primary) is missing")
	}
	if _, ok := cfg.Peers[cfg.Index]; !ok {
		return nil, fmt.Errorf("kvservice: peers %q do not include this pod's index %d", cfg.Peers.String(), cfg.Index)
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kvservice", "index", cfg.Index)
	data, entries, err := openLog(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		primary: cfg.Index == 0,
		marker:  filepath.Join(cfg.DataDir, markerFileName),
		data:    data,
		peers:   cfg.Peers.clone(),
		entries: entries,
		kv:      map[string][]byte{},
		changed: make(chan struct{}),
		acked:   map[int]uint64{},
	}
	for _, e := range entries {
		s.kv[e.Key] = e.Value
	}
	if s.primary {
		_, err := os.Stat(s.marker)
		if os.IsNotExist(err) && s.peers.recoveryReads() == 0 {
			// Alone, there is nobody to recover from: this log is all there is.
			err = writeMarker(s.marker, -1, uint64(len(entries)))
		}
		if err != nil && !os.IsNotExist(err) {
			data.close()
			return nil, fmt.Errorf("kvservice: recovery marker: %w", err)
		}
		if err == nil {
			s.recovered = true
			s.epoch = newEpoch()
		}
	}
	log.Info("log loaded", "role", s.role(), "entries", len(entries), "keys", len(s.kv),
		"peers", s.peers.String(), "quorum", s.peers.Quorum())
	return s, nil
}

// Run listens on cfg.Listen and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Listen == "" {
		return errors.New("kvservice: no listen address")
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.data.close()
		return fmt.Errorf("kvservice: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln and replicates (a follower from the primary; a
// primary that must recover, from the followers) until ctx ends, then
// shuts down: requests in flight are answered (waiting writes with 503),
// and the log is closed. A Server serves once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return runCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if s.primary {
			s.recoverLoop(runCtx)
		} else {
			s.followLoop(runCtx)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.log.Info("serving", "addr", ln.Addr().String(), "role", s.role())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	stop() // ends long polls, waiting writes and forwarded requests
	// Every handler watches runCtx, so what Shutdown can still wait for is a
	// connection that was dialed but never sent a request (net/http waits
	// 5 s for those): after a grace period, close them.
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	shutErr := srv.Shutdown(shutCtx)
	cancel()
	if errors.Is(shutErr, context.DeadlineExceeded) {
		s.log.Debug("closing connections still open after the shutdown grace period")
		shutErr = srv.Close()
	}
	wg.Wait()
	s.client.CloseIdleConnections()
	s.appendMu.Lock()
	closeErr := s.data.close()
	s.appendMu.Unlock()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	s.log.Info("stopped")
	return errors.Join(serveErr, shutErr, closeErr)
}

func (s *Server) role() string {
	if s.primary {
		return "primary"
	}
	return "follower"
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{key...}", s.handleGet)
	mux.HandleFunc("PUT /kv/{key...}", s.handlePut)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("PUT /peers", s.handlePeers)
	mux.HandleFunc("GET /internal/log", s.handleLog)
	return mux
}

// notifyLocked wakes everything waiting for a change.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) lastLocked() (seq, epoch uint64) {
	if n := len(s.entries); n > 0 {
		return uint64(n), s.entries[n-1].Epoch
	}
	return 0, 0
}

// durableOnLocked counts the listed pods that hold seq durably (primary only).
func (s *Server) durableOnLocked(seq uint64) int {
	n := 0
	for i := range s.peers {
		have := s.acked[i]
		if i == s.cfg.Index {
			have = uint64(len(s.entries))
		}
		if have >= seq {
			n++
		}
	}
	return n
}

// commitLocked is the highest seq durable on a quorum of the current list
// (primary only).
func (s *Server) commitLocked() uint64 {
	have := make([]uint64, 0, len(s.peers))
	for i := range s.peers {
		if i == s.cfg.Index {
			have = append(have, uint64(len(s.entries)))
		} else {
			have = append(have, s.acked[i])
		}
	}
	slices.Sort(have)
	slices.Reverse(have)
	return have[s.peers.Quorum()-1]
}

// servingLocked says why the primary cannot take client reads and writes.
func (s *Server) servingLocked() error {
	if s.broken != nil {
		return s.broken
	}
	if s.primary && !s.recovered {
		return ErrRecovering
	}
	return nil
}

// put appends a write on the primary and waits for a quorum.
func (s *Server) put(ctx context.Context, key string, value []byte) error {
	s.appendMu.Lock()
	s.mu.Lock()
	if err := s.servingLocked(); err != nil {
		s.mu.Unlock()
		s.appendMu.Unlock()
		return err
	}
	e := entry{Seq: uint64(len(s.entries)) + 1, Epoch: s.epoch, Key: key, Value: value}
	s.mu.Unlock()
	err := s.data.append([]entry{e})
	s.mu.Lock()
	if err != nil {
		s.broken = err
		s.log.Error("append failed; refusing writes from now on", "err", err)
	} else {
		s.entries = append(s.entries, e)
		s.kv[key] = value
		s.notifyLocked()
	}
	s.mu.Unlock()
	s.appendMu.Unlock()
	if err != nil {
		return err
	}
	return s.waitCommit(ctx, e.Seq)
}

// waitCommit waits until seq is durable on a quorum of the current list.
func (s *Server) waitCommit(ctx context.Context, seq uint64) error {
	timer := time.NewTimer(s.cfg.WriteTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.commitLocked() >= seq {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrClosed
		case <-timer.C:
			s.mu.Lock()
			have, n, q := s.durableOnLocked(seq), len(s.peers), s.peers.Quorum()
			s.mu.Unlock()
			return fmt.Errorf("%w: write %d is durable on %d of %d pods after %s, needs %d", ErrNoQuorum, seq, have, n, s.cfg.WriteTimeout, q)
		}
	}
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("kvservice: empty key")
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("kvservice: key of %d bytes is longer than %d", len(key), MaxKeyBytes)
	}
	return nil
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, err.Error())
}

func errorCode(err error) int {
	switch {
	case errors.Is(err, ErrNoQuorum), errors.Is(err, ErrRecovering), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := checkKey(key); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	tooLarge := fmt.Errorf("kvservice: value is larger than %d bytes", MaxValueBytes)
	if r.ContentLength > MaxValueBytes {
		httpError(w, http.StatusRequestEntityTooLarge, tooLarge)
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxValueBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		httpError(w, http.StatusBadRequest, fmt.Errorf("kvservice: read value: %w", err))
		return
	}
	if !s.primary {
		s.forward(w, r, value)
		return
	}
	if err := s.put(r.Context(), key, value); err != nil {
		httpError(w, errorCode(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := checkKey(key); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	consistent := r.URL.Query().Get("consistent")
	strong := consistent == "1" || consistent == "true"
	if strong && !s.primary {
		s.forward(w, r, nil)
		return
	}
	s.mu.Lock()
	err := s.servingLocked()
	if !s.primary {
		err = nil // a follower serves its own state even when broken
	}
	last, _ := s.lastLocked()
	s.mu.Unlock()
	if err != nil {
		httpError(w, errorCode(err), err)
		return
	}
	if strong {
		if err := s.waitCommit(r.Context(), last); err != nil {
			httpError(w, errorCode(err), err)
			return
		}
	}
	s.mu.Lock()
	value, ok := s.kv[key]
	s.mu.Unlock()
	if !ok {
		httpError(w, http.StatusNotFound, fmt.Errorf("kvservice: key %q not found", key))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(value)
}

// forward relays a client request to the primary, for writes and
// consistent reads that reach a follower.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get(hdrForwarded) != "" {
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf(
			"kvservice: pod %d is not the primary but was forwarded a request by pod %s (do the peer lists agree?)",
			s.cfg.Index, r.Header.Get(hdrForwarded)))
		return
	}
	s.mu.Lock()
	addr := s.peers[0]
	s.mu.Unlock()
	w.Header().Set(hdrPrimary, addr)
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Errorf("kvservice: forward: %w", err))
		return
	}
	req.Header.Set(hdrForwarded, strconv.Itoa(s.cfg.Index))
	resp, err := s.client.Do(req)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("kvservice: forward to the primary (pod 0 at %s): %w", addr, err))
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// readyLocked is the readiness rule of GET /health (see doc.go).
func (s *Server) readyLocked() (bool, string) {
	if s.broken != nil {
		return false, s.broken.Error()
	}
	if s.primary {
		if !s.recovered {
			return true, "ok: primary, recovering its log from the other pods"
		}
		return true, "ok: primary"
	}
	if !s.caughtUp {
		last, _ := s.lastLocked()
		return false, fmt.Sprintf("kvservice: catching up with the primary: at seq %d, the primary has %d", last, s.heardLast)
	}
	return true, "ok: follower"
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ready, why := s.readyLocked()
	s.mu.Unlock()
	if !ready {
		httpError(w, http.StatusServiceUnavailable, errors.New(why))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, why)
}

func (s *Server) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	ready, _ := s.readyLocked()
	last, _ := s.lastLocked()
	st := Status{Index: s.cfg.Index, Role: s.role(), Ready: ready, Peers: s.peers.clone(),
		Quorum: s.peers.Quorum(), AppliedSeq: last, Keys: len(s.kv)}
	if s.broken != nil {
		st.Error = s.broken.Error()
	}
	if s.primary {
		rec := s.recovered
		st.Recovered = &rec
		st.CommitSeq = s.commitLocked()
		st.Acked = map[int]uint64{}
		for i := range s.peers {
			if i != s.cfg.Index {
				st.Acked[i] = s.acked[i]
			}
		}
	} else {
		heard := s.heardLast
		st.PrimarySeq = &heard
		st.CommitSeq = s.heardCmt
	}
	return st
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.status())
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("kvservice: read peers: %w", err))
		return
	}
	p, err := ParsePeers(string(body))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if _, ok := p[s.cfg.Index]; !ok {
		httpError(w, http.StatusBadRequest, fmt.Errorf("kvservice: peers %q do not include this pod's index %d", p.String(), s.cfg.Index))
		return
	}
	s.mu.Lock()
	old := s.peers
	s.peers = p
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("peers updated", "old", old.String(), "new", p.String(), "quorum", p.Quorum())
	w.WriteHeader(http.StatusNoContent)
}

// handleLog serves the log after a position: GET /internal/log?after=N&
// epoch=E[&index=I][&wait=D][&limit=K]. The requester's log ends at seq N,
// whose entry has epoch E; if this pod's entry N has another epoch (or it
// has no entry N) the logs diverge: 409 with X-Kv-Mismatch, and X-Kv-Reset
// from a recovered primary. Otherwise the answer is up to K records after
// N, waiting up to D for one when there is none. On the primary, index I
// reports that follower I holds everything up to N durably.
func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after, epoch uint64
	var wait time.Duration
	from, limit := -1, maxBatchEntries
	var err error
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseUint(v, 10, 64)
	}
	if v := q.Get("epoch"); v != "" && err == nil {
		epoch, err = strconv.ParseUint(v, 10, 64)
	}
	if v := q.Get("index"); v != "" && err == nil {
		from, err = strconv.Atoi(v)
	}
	if v := q.Get("wait"); v != "" && err == nil {
		wait, err = time.ParseDuration(v)
		wait = min(wait, 30*time.Second)
	}
	if v := q.Get("limit"); v != "" && err == nil {
		limit, err = strconv.Atoi(v)
		limit = max(0, min(limit, maxBatchEntries))
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, fmt.Errorf("kvservice: log request: %w", err))
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	expired := wait <= 0
	for {
		s.mu.Lock()
		n := uint64(len(s.entries))
		if after > n || (after > 0 && s.entries[after-1].Epoch != epoch) {
			reset := s.primary && s.recovered
			s.mu.Unlock()
			w.Header().Set(hdrMismatch, "1")
			w.Header().Set(hdrLast, strconv.FormatUint(n, 10))
			if reset {
				w.Header().Set(hdrReset, "1")
			}
			httpError(w, http.StatusConflict, fmt.Errorf("kvservice: log does not match pod %d's at seq %d (pod %d's log ends at %d)", s.cfg.Index, after, s.cfg.Index, n))
			return
		}
		if s.primary && from > 0 && from != s.cfg.Index {
			if _, listed := s.peers[from]; listed && s.acked[from] != after {
				s.acked[from] = after
				s.notifyLocked()
			}
		}
		if n > after || expired || limit == 0 {
			s.writeBatchLocked(w, after, limit) // unlocks
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			expired = true
		case <-r.Context().Done():
			return
		}
	}
}

// writeBatchLocked answers a log request with the entries after seq after.
// It unlocks s.mu before writing the body.
func (s *Server) writeBatchLocked(w http.ResponseWriter, after uint64, limit int) {
	n := uint64(len(s.entries))
	commit := s.heardCmt
	if s.primary {
		commit = s.commitLocked()
	}
	var batch []entry
	size := 0
	for seq := after + 1; seq <= n && len(batch) < limit && (len(batch) == 0 || size < maxBatchBytes); seq++ {
		e := s.entries[seq-1]
		batch = append(batch, e)
		size += len(e.Key) + len(e.Value)
	}
	recovered := s.primary && s.recovered
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(hdrLast, strconv.FormatUint(n, 10))
	w.Header().Set(hdrCommit, strconv.FormatUint(commit, 10))
	if recovered {
		w.Header().Set(hdrRecovered, "1")
	}
	var b []byte
	for _, e := range batch {
		b = appendRecord(b, e)
	}
	w.Write(b)
}

// appendEntries appends es, which continue the log after seq after, to the
// log file and to the state.
func (s *Server) appendEntries(after uint64, es []entry) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	n, broken := uint64(len(s.entries)), s.broken
	s.mu.Unlock()
	if broken != nil {
		return broken
	}
	if n != after {
		return fmt.Errorf("kvservice: log moved from seq %d to %d during a copy", after, n)
	}
	if len(es) == 0 {
		return nil
	}
	err := s.data.append(es)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.broken = err
		s.log.Error("append failed; refusing writes from now on", "err", err)
		return err
	}
	s.entries = append(s.entries, es...)
	for _, e := range es {
		s.kv[e.Key] = e.Value
	}
	s.notifyLocked()
	return nil
}

// resetLog discards this pod's log and state.
func (s *Server) resetLog(why string) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	err := s.data.reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	discarded := len(s.entries)
	if err != nil {
		s.broken = err
		return err
	}
	s.entries = nil
	s.kv = map[string][]byte{}
	s.acked = map[int]uint64{}
	s.caughtUp = false
	s.notifyLocked()
	s.log.Warn("discarded the local log", "reason", why, "entries", discarded)
	return nil
}

// fetch asks the pod at addr for its log after ours. It returns the
// decoded entries (continuing ours), the headers, and whether the logs
// diverge.
func (s *Server) fetch(ctx context.Context, addr, query string) ([]entry, http.Header, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PollWait+10*time.Second)
	defer cancel()
	s.mu.Lock()
	after, epoch := s.lastLocked()
	s.mu.Unlock()
	u := fmt.Sprintf("http://%s/internal/log?after=%d&epoch=%d%s", addr, after, epoch, query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, false, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 2*maxBatchBytes+2*maxPayloadSize))
	if err != nil {
		return nil, nil, false, fmt.Errorf("read log from %s: %w", addr, err)
	}
	if resp.StatusCode == http.StatusConflict && resp.Header.Get(hdrMismatch) == "1" {
		return nil, resp.Header, true, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, false, fmt.Errorf("log from %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	es, _, err := decodeEntries(body, after)
	if err != nil {
		return nil, nil, false, fmt.Errorf("log from %s: %w", addr, err)
	}
	if err := s.appendEntries(after, es); err != nil {
		return nil, nil, false, err
	}
	return es, resp.Header, false, nil
}

func headerSeq(h http.Header, name string) uint64 {
	v, _ := strconv.ParseUint(h.Get(name), 10, 64)
	return v
}

// retry runs step until it returns done or ctx ends, backing off after
// errors and logging each new problem once.
func (s *Server) retry(ctx context.Context, what string, step func(context.Context) (bool, error)) {
	const minBackoff, maxBackoff = 50 * time.Millisecond, time.Second
	backoff := minBackoff
	problem := ""
	for ctx.Err() == nil {
		done, err := step(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if problem != "" {
				s.log.Info(what + ": working again")
				problem = ""
			}
			if done {
				return
			}
			backoff = minBackoff
			continue
		}
		if msg := err.Error(); msg != problem {
			s.log.Warn(what+": retrying", "err", msg)
			problem = msg
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// followLoop keeps a follower's log a copy of the primary's.
func (s *Server) followLoop(ctx context.Context) {
	s.retry(ctx, "replicate from the primary", func(ctx context.Context) (bool, error) {
		s.mu.Lock()
		addr := s.peers[0]
		wait := s.cfg.PollWait
		if !s.caughtUp {
			wait = 0 // learn the primary's last seq at once, for readiness
		}
		s.mu.Unlock()
		_, h, diverged, err := s.fetch(ctx, addr, fmt.Sprintf("&index=%d&wait=%s", s.cfg.Index, wait))
		if err != nil {
			return false, err
		}
		if diverged {
			if h.Get(hdrReset) != "1" {
				return false, fmt.Errorf("log does not match the primary's, which is still recovering (it has %s entries)", h.Get(hdrLast))
			}
			return false, s.resetLog("the log diverges from the primary's (the primary lost its volume and recovered from other pods)")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.heardLast, s.heardCmt = headerSeq(h, hdrLast), headerSeq(h, hdrCommit)
		if last, _ := s.lastLocked(); !s.caughtUp && last >= s.heardLast {
			s.caughtUp = true
			s.log.Info("caught up with the primary", "seq", last)
			s.notifyLocked()
		}
		return false, nil
	})
}

// recoverLoop makes a primary without its recovery marker copy the log from
// the other pods before it takes reads and writes (see doc.go, "Recovery").
func (s *Server) recoverLoop(ctx context.Context) {
	s.mu.Lock()
	done := s.recovered
	s.mu.Unlock()
	if done {
		return
	}
	s.log.Info("no recovery marker: copying the log from the other pods before taking reads and writes")
	s.retry(ctx, "recover the log", func(ctx context.Context) (bool, error) {
		return true, s.recoverOnce(ctx)
	})
}

func (s *Server) recoverOnce(ctx context.Context) error {
	s.mu.Lock()
	peers := s.peers.clone()
	s.mu.Unlock()
	need := peers.recoveryReads()
	best, bestLast := -1, uint64(0)
	answered := 0
	var problems []string
	for _, i := range peers.indexes() {
		if i == s.cfg.Index {
			continue
		}
		last, err := s.probe(ctx, peers[i])
		if err != nil {
			problems = append(problems, fmt.Sprintf("pod %d: %v", i, err))
			continue
		}
		answered++
		if best < 0 || last > bestLast {
			best, bestLast = i, last
		}
	}
	if answered < need {
		return fmt.Errorf("%d of the %d other pods answered, need %d: %s", answered, len(peers)-1, need, strings.Join(problems, "; "))
	}
	// Copy from the most advanced pod. Each fetch checks that our log
	// matches its log; ours is not trusted, so on a mismatch it goes.
	for best >= 0 {
		es, _, diverged, err := s.fetch(ctx, peers[best], fmt.Sprintf("&limit=%d", maxBatchEntries))
		if err != nil {
			return fmt.Errorf("copy from pod %d: %w", best, err)
		}
		if diverged {
			if err := s.resetLog(fmt.Sprintf("an unrecovered log that does not match pod %d's", best)); err != nil {
				return err
			}
			continue
		}
		s.mu.Lock()
		last, _ := s.lastLocked()
		s.mu.Unlock()
		if last >= bestLast {
			break
		}
		if len(es) == 0 {
			return fmt.Errorf("copy from pod %d: no entries after %d although it reported %d", best, last, bestLast)
		}
	}
	if err := writeMarker(s.marker, best, bestLast); err != nil {
		return err
	}
	s.mu.Lock()
	s.recovered = true
	s.epoch = newEpoch()
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("recovered; taking reads and writes", "from_pod", best, "seq", bestLast, "answered", answered, "needed", need)
	return nil
}

// probe asks a pod for its last seq.
func (s *Server) probe(ctx context.Context, addr string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/internal/log?after=0&limit=0", nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("probe: %s", resp.Status)
	}
	return headerSeq(resp.Header, hdrLast), nil
}

func writeMarker(path string, from int, seq uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("kvservice: write recovery marker: %w", err)
	}
	_, err = fmt.Fprintf(f, "recovered from pod %d at seq %d\n", from, seq)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("kvservice: write recovery marker: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// newEpoch picks a random epoch: epochs are compared only for equality, and
// a primary that lost its volume cannot know the epochs it used before.
func newEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}
