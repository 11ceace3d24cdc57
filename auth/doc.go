// Package auth owns who a caller is and what it may do: bearer tokens and
// client certificates mapped to principals (the auth file), the per
// principal permissions (the ACL file), and the context value through
// which a master's handlers learn the authenticated principal of a call.
//
// # Principals in a request
//
// A master authenticates every Connect call before its handler runs and,
// when authentication is on, stores the caller's Identity in the request
// context (NewContext). Handlers and other packages read it with
// PrincipalFrom or IdentityFrom; both report false when authentication is
// off or the call carried no credential.
//
// # The auth file (--auth-file)
//
// JSON, one entry per principal:
//
//	{"principals": [
//	  {"name": "ops",   "token_sha256": ["<hex sha256 of the token>"]},
//	  {"name": "web",   "token_sha256": ["..."], "cert_names": ["web-scheduler"]},
//	  {"name": "agent-a1", "agent": "a1", "token_sha256": ["..."]}
//	]}
//
// Tokens are stored only as the hex SHA-256 of the token text (HashToken;
// `agora auth token` mints one with its hash). cert_names lists client
// certificate common names that authenticate as the principal. A
// principal with "agent" set is that agent: it may register and report
// only as that agent id, for that agent's tasks. Names are unique, and a
// token hash or certificate name maps to one principal only.
//
// # The ACL file (--acl-file)
//
// JSON, permissions per principal name ("*" is every authenticated
// principal, merged with the principal's own entry):
//
//	{"principals": {
//	  "web": {"register_roles": ["web"], "reserve_roles": ["web"],
//	          "unreserve_roles": ["web"], "create_volume_roles": ["web"],
//	          "destroy_volume_roles": ["web"]},
//	  "ops": {"operator_read": true, "teardown_frameworks": true,
//	          "operator_write": ["roles", "drain", "raft", "snapshots", "services", "gossip"]}
//	}}
//
// A role list may hold "*" (any role); operator_write may hold "*" (every
// area). Anything not granted is denied.
package auth
