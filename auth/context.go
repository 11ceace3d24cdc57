package auth

import "context"

// Identity is an authenticated caller.
type Identity struct {
	// Principal names the caller, as in the auth and ACL files.
	Principal string
	// Agent is the agent id the principal is bound to; "" when the
	// principal is not an agent.
	Agent string
	// Via is how the caller proved it: "token" or "cert".
	Via string
}

type ctxKey struct{}

// NewContext returns ctx carrying id as the authenticated caller.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// IdentityFrom returns the authenticated caller of a request; false when
// authentication is off or the call is unauthenticated.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok && id.Principal != ""
}

// PrincipalFrom returns the authenticated principal of a Connect request;
// "" and false when authentication is off or the call is unauthenticated.
func PrincipalFrom(ctx context.Context) (string, bool) {
	id, ok := IdentityFrom(ctx)
	return id.Principal, ok
}
