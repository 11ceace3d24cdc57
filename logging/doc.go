// Package logging builds agora's log/slog loggers and bridges the logging
// interfaces of the HashiCorp libraries agora embeds into them.
//
// Driving it:
//
//  1. Build one root logger per process with [New], choosing the minimum
//     level and text or JSON output.
//  2. Derive one logger per component with slog's With, e.g.
//     root.With("component", "raft").
//  3. Hand hashicorp/raft an hclog.Logger built with [HCLog]; raft's
//     levels map onto slog's (TRACE becomes [LevelTrace], below Debug).
//  4. Hand memberlist and serf a *log.Logger built with [StdLog]; their
//     "[DEBUG] memberlist: ..." style lines are parsed and re-emitted at the
//     matching slog level, with the subsystem ("memberlist", "serf") as the
//     "subsystem" attribute and the prefix removed from the message.
//
// Nothing in this package buffers: every line is handed to the slog handler
// synchronously, so a test that shuts a component down sees all of its logs.
package logging
