package ui

import (
	"fmt"
	"net/http"
	"time"
)

// Timings of the live event stream.
const (
	// eventMinGap spaces events: a busy cluster applies many entries a
	// second; a page need not re-render for each.
	eventMinGap = time.Second
	// eventPing is how often an event is sent with nothing new, so the
	// page notices a dead stream and a change of leader (which applies no
	// entry on a follower that lost its leader).
	eventPing = 3 * time.Second
)

// raftToken is the Raft state as the page's banner depends on it.
func raftToken(v View) string {
	if v.RaftState == "leader" && v.LeaderReady {
		return "leader-ready"
	}
	return v.RaftState
}

// events streams server-sent events: "data: INDEX LEADER RAFTSTATE", one
// when the applied state or the leader changes (at most one per
// eventMinGap) and one every eventPing regardless. It ends when the client
// goes or the master stops.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ping := time.NewTicker(eventPing)
	defer ping.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	<-gap.C
	for {
		v := h.src.View()
		leader := v.LeaderID
		if leader == "" {
			leader = "-"
		}
		if _, err := fmt.Fprintf(w, "retry: 2000\ndata: %d %s %s\n\n", v.AppliedIndex, leader, raftToken(v)); err != nil {
			return
		}
		fl.Flush()
		// Wait out the gap, then for a change or a ping.
		gap.Reset(eventMinGap)
		select {
		case <-gap.C:
		case <-r.Context().Done():
			return
		case <-h.src.Done():
			return
		}
		select {
		case <-v.State.Changed():
		case <-ping.C:
		case <-r.Context().Done():
			return
		case <-h.src.Done():
			return
		}
	}
}
