// Package client builds Connect clients for agora's three services that
// follow leader redirects.
//
// A follower answers a call that needs the leader with Unavailable, a
// LeaderRedirect error detail and an "Agora-Leader" header. A Client
// retries such a unary call at the leader (up to 3 hops) and sends later
// calls there first. Server streams are not retried; callers (the SDK)
// resubscribe using LeaderFromError.
//
// Usage:
//
//	c := client.New("http://127.0.0.1:7100")
//	resp, err := c.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{...}))
//
// By default requests use HTTP/2 without TLS (prior knowledge) and the
// Connect protocol; WithGRPC switches to the gRPC protocol.
package client
