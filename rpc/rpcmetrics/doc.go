// Package rpcmetrics counts and times Connect RPCs for Prometheus: one
// connect.Interceptor, on the handler side (masters) or the client side
// (agents, frameworks), that covers unary and streaming calls.
//
// Series, with S the side ("server" or "client"):
//
//	agora_rpc_S_requests_total{service,method,type,code}
//	agora_rpc_S_request_duration_seconds{service,method,type,code}
//	agora_rpc_S_in_flight{service,method,type}
//	agora_rpc_S_stream_messages_total{service,method,direction}
//
// service and method come from the procedure ("/agora.v1.SchedulerService/
// Subscribe" -> agora.v1.SchedulerService, Subscribe); type is unary,
// client_stream, server_stream or bidi; code is "ok" or the Connect code
// of the error ("invalid_argument", "unavailable", ...). A stream is one
// request: it is counted and timed when it ends (the handler returns; on
// the client, CloseResponse), so a stream's duration is its lifetime.
// direction is "sent" or "received", from this side's view.
//
// On the client, the interceptor sees each attempt the client makes: put
// it inside any retrying interceptor to count attempts, outside to count
// calls.
//
// Build one Interceptor per side and registry (New), pass it to
// connect.WithInterceptors and register it (it is a prometheus.Collector).
package rpcmetrics
