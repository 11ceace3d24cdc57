package client

import (
	"context"
	"os"

	"connectrpc.com/connect"
)

// EnvToken is the environment variable the CLI, agents and frameworks
// read a bearer token from when none is given.
const EnvToken = "AGORA_TOKEN"

// TokenFromEnv returns $AGORA_TOKEN.
func TokenFromEnv() string { return os.Getenv(EnvToken) }

// WithToken sends "Authorization: Bearer token" with every call and
// stream; masters with an auth file map it to a principal. "" sends
// nothing. Send tokens only over TLS: anyone who reads one can use it.
func WithToken(token string) Option {
	return func(o *options) {
		if token != "" {
			o.connect = append(o.connect, connect.WithInterceptors(tokenInterceptor("Bearer "+token)))
		}
	}
}

// tokenInterceptor sets the Authorization header of every request.
type tokenInterceptor string

func (t tokenInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(t))
		return next(ctx, req)
	}
}

func (t tokenInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(t))
		return conn
	}
}

func (t tokenInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
