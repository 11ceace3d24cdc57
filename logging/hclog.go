package logging

import (
	"context"
	"io"
	"log"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// HCLog returns an hclog.Logger (the interface hashicorp/raft logs through)
// that forwards every record to l at the matching slog level. The logger's
// name is attached as the "logger" attribute; Named appends to it with a dot,
// as hclog does. SetLevel raises a floor shared by the logger and everything
// derived from it; records below the floor, or below what l's handler
// accepts, are dropped. A few records raft logs as WARN during normal
// operation (a follower catching up, the first election) are emitted at
// DEBUG or INFO instead. A nil l means slog.Default().
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return &hcLogger{l: orDefault(l), name: name, floor: new(atomic.Int32)}
}

// hcLogger adapts slog to hclog. floor holds an hclog.Level; NoLevel (0)
// means "defer to the slog handler".
type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
	floor   *atomic.Int32
}

var _ hclog.Logger = (*hcLogger)(nil)

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel, and anything unknown
		return slog.LevelInfo
	}
}

func (h *hcLogger) enabled(level hclog.Level) bool {
	if level == hclog.Off {
		return false
	}
	floor := hclog.Level(h.floor.Load())
	if floor == hclog.Off {
		return false
	}
	if floor != hclog.NoLevel && level != hclog.NoLevel && level < floor {
		return false
	}
	return h.l.Enabled(context.Background(), slogLevel(level))
}

// Log emits msg at level with alternating key/value args. The records of
// raft's normal operation that raft logs as WARN (see raftRoutine) are
// emitted lower.
func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	level = routineLevel(level, msg, args)
	if !h.enabled(level) {
		return
	}
	all := make([]any, 0, 2+len(h.implied)+len(args))
	if h.name != "" {
		all = append(all, "logger", h.name)
	}
	all = append(all, h.implied...)
	all = append(all, normalise(args)...)
	h.l.Log(context.Background(), slogLevel(level), msg, all...)
}

// normalise turns hclog's loosely typed args into slog pairs: a non-string
// key is kept under "!BADKEY" by slog already, but an error value is turned
// into its message so text and JSON handlers both print it readably.
func normalise(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if err, ok := a.(error); ok && i%2 == 1 {
			out[i] = err.Error()
			continue
		}
		out[i] = a
	}
	return out
}

// Trace emits at [LevelTrace].
func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }

// Debug emits at slog.LevelDebug.
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }

// Info emits at slog.LevelInfo.
func (h *hcLogger) Info(msg string, args ...any) { h.Log(hclog.Info, msg, args...) }

// Warn emits at slog.LevelWarn.
func (h *hcLogger) Warn(msg string, args ...any) { h.Log(hclog.Warn, msg, args...) }

// Error emits at slog.LevelError.
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

// IsTrace reports whether trace records would be emitted.
func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }

// IsDebug reports whether debug records would be emitted.
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }

// IsInfo reports whether info records would be emitted.
func (h *hcLogger) IsInfo() bool { return h.enabled(hclog.Info) }

// IsWarn reports whether warn records would be emitted.
func (h *hcLogger) IsWarn() bool { return h.enabled(hclog.Warn) }

// IsError reports whether error records would be emitted.
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

// ImpliedArgs returns the pairs added with With.
func (h *hcLogger) ImpliedArgs() []any { return append([]any(nil), h.implied...) }

// With returns a logger that adds args to every record.
func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), normalise(args)...)
	return &c
}

// Name returns the logger's dotted name.
func (h *hcLogger) Name() string { return h.name }

// Named returns a logger whose name is this one's with "."+name appended.
func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed returns a logger named name.
func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel sets the floor shared with every logger derived from this one.
func (h *hcLogger) SetLevel(level hclog.Level) { h.floor.Store(int32(level)) }

// GetLevel returns the floor set with SetLevel, or the hclog level matching
// the slog handler's minimum when no floor was set.
func (h *hcLogger) GetLevel() hclog.Level {
	if f := hclog.Level(h.floor.Load()); f != hclog.NoLevel {
		return f
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.l.Enabled(context.Background(), slogLevel(l)) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger writing through StandardWriter.
func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose lines become records of this logger.
// Level prefixes such as "[WARN]" are always parsed (as with InferLevels);
// opts.ForceLevel, when set, overrides them.
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &lineWriter{l: h.l, name: h.name, attrs: h.implied}
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		lvl := slogLevel(opts.ForceLevel)
		w.force = &lvl
	}
	return w
}
