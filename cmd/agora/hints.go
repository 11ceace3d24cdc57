package main

import (
	"strings"

	"connectrpc.com/connect"
)

// lastAddr is the --addr of the last client a command made, for hints.
var lastAddr string

// nextStep says what to do about an error a client command got, or "".
// Errors should tell an operator what to try next, not only what failed.
func nextStep(code connect.Code, msg string, leaderKnown bool) string {
	addr := lastAddr
	if addr == "" {
		addr = "the default address"
	}
	unreachable := strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") ||
		strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "dial tcp")
	switch {
	case (code == connect.CodeUnavailable || code == connect.CodeDeadlineExceeded) && unreachable:
		return "no master reachable at " + addr + ": is a master running? start one (agora master, or agora dev) or point --addr (or AGORA_ADDR) at one"
	case code == connect.CodeUnavailable && !leaderKnown:
		return "the masters at " + addr + " answer but know no leader (an election, or quorum lost): retry shortly; agora status --stale shows each master's view"
	case code == connect.CodeDeadlineExceeded:
		return "no answer within --timeout from " + addr + ": is the cluster overloaded or partitioned? retry with a longer --timeout or another --addr"
	case code == connect.CodeUnauthenticated || (code == connect.CodeUnavailable && strings.Contains(msg, "tls")) ||
		strings.Contains(msg, "certificate"):
		return "check the client's TLS files (--tls-ca/--tls-cert/--tls-key or AGORA_TLS_CA/AGORA_TLS_CERT/AGORA_TLS_KEY) and --tls-cluster"
	}
	return ""
}
