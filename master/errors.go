package master

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/fsm"
)

// The edge's own refusals: what only the edge can judge (a malformed call,
// the caller's stream identity, message sizes). Every rule about the state
// is the FSM's, answered through RejectionError.

func invalid(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func notFound(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}

func precondition(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(format, args...))
}

// RejectionError maps an FSM rejection to the Connect error a client sees.
// This is the one place rejection codes become Connect codes.
func RejectionError(r *fsm.Rejection) *connect.Error {
	if r == nil {
		return nil
	}
	code := connect.CodeInternal
	switch r.Code {
	case fsm.CodeInvalidArgument:
		code = connect.CodeInvalidArgument
	case fsm.CodeNotFound:
		code = connect.CodeNotFound
	case fsm.CodeFailedPrecondition:
		code = connect.CodeFailedPrecondition
	case fsm.CodePermissionDenied:
		code = connect.CodePermissionDenied
	case fsm.CodeAlreadyExists:
		code = connect.CodeAlreadyExists
	case fsm.CodeResourceExhausted:
		code = connect.CodeResourceExhausted
	}
	return connect.NewError(code, errors.New(truncate(r.Message)))
}

// maxErrorMessage bounds the message of an error a client gets: a
// rejection that quotes a hostile request (a task of 5000 resources)
// must not echo it back whole.
const maxErrorMessage = 1024

func truncate(msg string) string {
	if len(msg) <= maxErrorMessage {
		return msg
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes cut)", msg[:cut], len(msg)-cut)
}

// withMessage returns a copy of e with another message, keeping its code,
// details and metadata.
func withMessage(e *connect.Error, msg string) *connect.Error {
	out := connect.NewError(e.Code(), errors.New(msg))
	for _, d := range e.Details() {
		out.AddDetail(d)
	}
	for k, vs := range e.Meta() {
		for _, v := range vs {
			out.Meta().Add(k, v)
		}
	}
	return out
}
