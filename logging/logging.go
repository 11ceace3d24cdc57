package logging

import (
	"io"
	"log/slog"
)

// LevelTrace is the slog level that hclog's TRACE maps to. It is below
// slog.LevelDebug, so a logger built with level Debug drops trace lines.
const LevelTrace = slog.Level(-8)

// New returns a logger writing to w that drops records below level. With
// json set the output is one JSON object per line; otherwise slog's
// key=value text format. Records at [LevelTrace] print their level as TRACE.
func New(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: renameTrace}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func renameTrace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if lvl, ok := a.Value.Any().(slog.Level); ok && lvl <= LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	}
	return a
}

func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
