package logging

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// StdLog returns a *log.Logger for libraries that only take the standard
// logger (memberlist, serf). Each line it writes is parsed for a leading
// level tag ("[TRACE]", "[DEBUG]", "[INFO]", "[WARN]", "[WARNING]",
// "[ERR]", "[ERROR]"), optionally preceded by a timestamp, and re-emitted on
// l at the matching level; untagged lines are emitted at Info. A following
// "subsystem: " word (as in "memberlist: ...") becomes the "subsystem"
// attribute. name, when not empty, is attached as the "logger" attribute.
// A nil l means slog.Default().
//
// An error about a "use of closed network connection" is emitted at Debug:
// it is the library's own socket, closed by its shutdown while one of its
// goroutines was still sending (memberlist's probes race its Shutdown), so
// a clean stop logs no ERROR for it. memberlist's failed TCP fallback
// probe of an unresponsive member is emitted at Warn: it is how a member
// that is down is found, not an error of this process.
func StdLog(l *slog.Logger, name string) *log.Logger {
	return log.New(&lineWriter{l: orDefault(l), name: name}, "", 0)
}

// lineWriter turns written lines into slog records.
type lineWriter struct {
	l     *slog.Logger
	name  string
	attrs []any
	force *slog.Level
}

// Write emits one record per non-empty line of p. It never fails: a logging
// bridge that returned errors would only make callers drop their own lines.
func (w *lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		w.emit(s)
	}
	return len(p), nil
}

var levelTags = []struct {
	tag   string
	level slog.Level
}{
	{"[TRACE]", LevelTrace},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[WARNING]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// ParseLine splits a memberlist/serf style log line into its level, its
// subsystem ("" when absent) and the remaining message. A line without a
// level tag is Info and is returned whole.
func ParseLine(line string) (level slog.Level, subsystem, msg string) {
	level, msg = slog.LevelInfo, line
	// The tag may follow a timestamp (log.LstdFlags); look for it within the
	// first few words only, so a "[WARN]" inside a message is left alone.
	idx := strings.IndexByte(line, '[')
	if idx < 0 || idx > 40 {
		return level, "", msg
	}
	found := false
	for _, t := range levelTags {
		if strings.HasPrefix(line[idx:], t.tag) {
			level, msg, found = t.level, strings.TrimSpace(line[idx+len(t.tag):]), true
			break
		}
	}
	if !found {
		return slog.LevelInfo, "", line
	}
	if colon := strings.Index(msg, ": "); colon > 0 && isWord(msg[:colon]) {
		subsystem, msg = msg[:colon], msg[colon+2:]
	}
	return level, subsystem, msg
}

func isWord(s string) bool {
	if len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func (w *lineWriter) emit(line string) {
	level, subsystem, msg := ParseLine(line)
	if level >= slog.LevelError && strings.Contains(msg, "use of closed network connection") {
		level = slog.LevelDebug
	}
	if level >= slog.LevelError && subsystem == "memberlist" && strings.HasPrefix(msg, "Failed fallback TCP ping") {
		// The TCP probe of a member that missed its UDP probe, failing:
		// failure detection doing its job (the member is down, or the
		// network to it), whose verdict gossip reports as the member
		// failing. Every agent killed made masters log it at ERROR.
		level = slog.LevelWarn
	}
	if w.force != nil {
		level = *w.force
	}
	ctx := context.Background()
	if !w.l.Enabled(ctx, level) {
		return
	}
	args := make([]any, 0, 4+len(w.attrs))
	if w.name != "" {
		args = append(args, "logger", w.name)
	}
	if subsystem != "" {
		args = append(args, "subsystem", subsystem)
	}
	args = append(args, w.attrs...)
	w.l.Log(ctx, level, msg, args...)
}
