// Package ui is the operator web UI that every master serves at /ui/.
//
// Pages are server-rendered html/template pages over one immutable FSM
// state (fsm.State) per request, with their templates and static assets
// embedded in the binary: no npm, no CDN, and the UI works with scripts
// off. A small script (static/ui.js) keeps a page live: it listens to
// /ui/events (server-sent events carrying the applied index and the
// leader) and, when either changes, fetches the page again and swaps its
// content. When the event stream drops the page says so: its view may be
// stale.
//
// # Followers and a leaderless cluster
//
// A master serves its own replicated view; it does not proxy to the
// leader. Every page carries a banner naming the master that answered,
// its Raft state and applied index, and on a follower the leader's id and
// a link to the leader's UI. With no leader known the banner says that
// the view is this master's last applied state and may be stale. The
// explain page alone needs the leader (the allocation trace lives in the
// leader's memory): a follower links to the leader's page instead.
//
// # Driving it
//
// The master implements Source and mounts New(src) at /ui/ (see
// master/ui.go). Tests use a fake Source over an FSM built by commands.
//
// # Pages
//
//	/ui/                          overview: leader, masters (raft state, lag), utilization, counts
//	/ui/agents[?page=N]           agents; /ui/agents/ID one agent, its tasks, reservations, volumes
//	/ui/frameworks                frameworks; /ui/frameworks/ID one framework; .../explain
//	/ui/tasks[?state=S&framework=F&agent=A&page=N]
//	/ui/tasks/FRAMEWORK/TASK      one task with the tail of its stdout and stderr
//	/ui/offers, /ui/reservations, /ui/roles
//	/ui/services; /ui/services/NAME
//
// Lists show PageSize rows per page. An unknown object, page or path is a
// 404 page; a malformed query parameter is a 400 page.
package ui
