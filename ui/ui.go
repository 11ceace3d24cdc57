package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// PageSize is the number of rows a list page shows.
const PageSize = 50

// LogTailBytes is how much of a task's stdout and stderr its page shows.
const LogTailBytes = 8 << 10

// Source is what the UI reads. The master implements it; its methods must
// be safe for concurrent use.
type Source interface {
	// View returns this master's replicated state and Raft view.
	View() View
	// Masters returns every master with its Raft state and replication
	// lag as this master can tell within ctx (the overview calls it).
	Masters(ctx context.Context) []MasterView
	// Explain explains the leader's last allocation round for a
	// framework; a follower returns the Connect error the API gives
	// (Unavailable with the leader's address).
	Explain(ctx context.Context, frameworkID string) (*agorav1.ExplainFrameworkResponse, error)
	// Services decodes the services recorded in st.
	Services(st *fsm.State) ([]Service, error)
	// TaskLog returns up to max bytes of the end of a task's stdout or
	// stderr ("stdout", "stderr") from the agent at agentAddr.
	TaskLog(ctx context.Context, agentAddr, frameworkID, taskID, stream string, max int) ([]byte, error)
	// Done is closed when the master begins to stop: live event streams
	// end then.
	Done() <-chan struct{}
}

// View is one master's view of the cluster.
type View struct {
	// State is the replicated state as applied here.
	State *fsm.State
	// Self is this master's id; Cluster the cluster name.
	Self, Cluster string
	// RaftState is "leader", "follower", "candidate" or "shutdown".
	RaftState string
	// LeaderID and LeaderURL name the leader; "" when none is known.
	LeaderID, LeaderURL string
	// LeaderReady is true on a leader whose term's barrier completed.
	LeaderReady bool
	// Term, CommitIndex and AppliedIndex are this master's Raft indexes.
	Term, CommitIndex, AppliedIndex uint64
	// LastContact is how long ago a follower heard from the leader
	// (negative: unknown; zero on the leader).
	LastContact time.Duration
	// Now is the master's clock.
	Now time.Time
}

// MasterView is one master on the overview.
type MasterView struct {
	ID, URL, Suffrage string
	// State is "leader", "follower", "candidate" or "unknown".
	State string
	// Answered is false when the master did not answer in time; then
	// AppliedIndex and Lag are unknown.
	Answered     bool
	AppliedIndex uint64
	// Lag is how many entries the master's applied index is behind the
	// leader's commit index (as this master knows it).
	Lag uint64
}

// Service is one service as recorded by the service scheduler.
type Service struct {
	Name, FrameworkID string
	Version           uint64
	Status            service.Status
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Handler serves the UI. Mount it at /ui/.
type Handler struct {
	src   Source
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns the UI handler over src. log may be nil.
func New(src Source, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{src: src, log: log, pages: parseTemplates()}
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(fmt.Sprintf("ui: embedded static: %v", err)) // the embed pattern guarantees it
	}
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /ui/static/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=300")
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /ui/events", h.events)
	mux.HandleFunc("GET /ui/{$}", h.page(h.overview))
	mux.HandleFunc("GET /ui/agents", h.page(h.agents))
	mux.HandleFunc("GET /ui/agents/{id}", h.page(h.agent))
	mux.HandleFunc("GET /ui/frameworks", h.page(h.frameworks))
	mux.HandleFunc("GET /ui/frameworks/{id}", h.page(h.framework))
	mux.HandleFunc("GET /ui/frameworks/{id}/explain", h.page(h.explain))
	mux.HandleFunc("GET /ui/tasks", h.page(h.tasks))
	mux.HandleFunc("GET /ui/tasks/{fid}/{tid}", h.page(h.task))
	mux.HandleFunc("GET /ui/offers", h.page(h.offers))
	mux.HandleFunc("GET /ui/reservations", h.page(h.reservations))
	mux.HandleFunc("GET /ui/roles", h.page(h.roles))
	mux.HandleFunc("GET /ui/services", h.page(h.services))
	mux.HandleFunc("GET /ui/services/{name}", h.page(h.service))
	mux.HandleFunc("/ui/", h.page(func(*http.Request, View) (*page, error) {
		return nil, errNotFound("no such page")
	}))
	h.mux = mux
	return h
}

// ServeHTTP implements http.Handler. A request outside /ui/ is a 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// page is what a page builder returns: the template and its data.
type page struct {
	Template string
	Title    string
	Nav      string
	// Live pages follow /ui/events; the explain page does not (each
	// render asks the leader for a traced allocation round).
	Live bool
	Data any
}

// httpError is a page builder's failure with its HTTP status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errNotFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

func errBadRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// layout is the data of the layout template: the page plus the banner.
type layout struct {
	*page
	View   View
	Banner banner
	// Status and Message are set on error pages.
	Status  int
	Message string
}

// banner says whose view the page is and how fresh.
type banner struct {
	Class string // "ok", "warn", "bad"
	Text  string
	// LeaderLink, when set, is the leader's UI.
	LeaderLink string
}

func viewBanner(v View) banner {
	switch {
	case v.RaftState == "leader" && v.LeaderReady:
		return banner{Class: "ok", Text: fmt.Sprintf("master %s (leader, term %d): state at index %d", v.Self, v.Term, v.AppliedIndex)}
	case v.RaftState == "leader":
		return banner{Class: "warn", Text: fmt.Sprintf("master %s was just elected (term %d) and is catching up: state at index %d may be stale", v.Self, v.Term, v.AppliedIndex)}
	case v.LeaderID == "":
		return banner{Class: "bad", Text: fmt.Sprintf("no leader known: this is master %s's last applied state (index %d, raft %s) and may be stale", v.Self, v.AppliedIndex, v.RaftState)}
	}
	b := banner{Class: "warn", Text: fmt.Sprintf("master %s (follower of %s): replicated state at index %d", v.Self, v.LeaderID, v.AppliedIndex)}
	if v.LastContact > 0 {
		b.Text += fmt.Sprintf(", leader last heard %s ago", v.LastContact.Round(time.Millisecond))
	}
	if v.LeaderURL != "" {
		b.LeaderLink = v.LeaderURL + "/ui/"
	}
	return b
}

// page wraps a page builder: the view is taken once per request, errors
// become error pages and a panic in a builder a 500 page, never a crash.
func (h *Handler) page(build func(*http.Request, View) (*page, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := h.src.View()
		l := layout{View: v, Banner: viewBanner(v)}
		p, err := func() (p *page, err error) {
			defer func() {
				if rec := recover(); rec != nil {
					h.log.Warn("ui page panicked", "path", r.URL.Path, "panic", rec)
					err = &httpError{status: http.StatusInternalServerError, msg: "internal error rendering this page"}
				}
			}()
			return build(r, v)
		}()
		status := http.StatusOK
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) {
				he = &httpError{status: http.StatusInternalServerError, msg: err.Error()}
			}
			status = he.status
			p = &page{Template: "error", Title: http.StatusText(status)}
			l.Status, l.Message = status, he.msg
		}
		l.page = p
		var buf bytes.Buffer
		if err := h.pages[p.Template].ExecuteTemplate(&buf, "layout", l); err != nil {
			h.log.Warn("ui template failed", "page", p.Template, "err", err)
			http.Error(w, "internal error rendering this page", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
	}
}

// pager is one page of a list.
type pager struct {
	Page, Pages, Total int
	From, To           int // 1-based rows shown, To inclusive
	// Prev and Next are query strings of the neighbour pages, "" at the
	// ends.
	Prev, Next string
}

// paginate cuts n rows into pages of PageSize by the "page" parameter:
// malformed is 400, past the end 404 (page 1 of an empty list exists).
func paginate(r *http.Request, n int) (pager, error) {
	p := 1
	if s := r.URL.Query().Get("page"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return pager{}, errBadRequest("page %q is not a positive number", s)
		}
		p = v
	}
	pages := max(1, (n+PageSize-1)/PageSize)
	if p > pages {
		return pager{}, errNotFound("page %d does not exist: there are %d", p, pages)
	}
	pg := pager{Page: p, Pages: pages, Total: n, From: (p-1)*PageSize + 1, To: min(p*PageSize, n)}
	if n == 0 {
		pg.From = 0
	}
	link := func(to int) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(to))
		return "?" + q.Encode()
	}
	if p > 1 {
		pg.Prev = link(p - 1)
	}
	if p < pages {
		pg.Next = link(p + 1)
	}
	return pg, nil
}

// slice returns the rows of page pg.
func slice[T any](rows []T, pg pager) []T {
	if pg.Total == 0 {
		return nil
	}
	return rows[pg.From-1 : pg.To]
}
