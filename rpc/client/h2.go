//lint:file-ignore SA1019 x/net/http2's Transport is deprecated in favour of net/http's, whose HTTP/2 client dials once per call waiting for a connection (see h2Transport); this file is the one place that uses it.

package client

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"golang.org/x/net/http2"
)

// h2Transport is the transport of every client: HTTP/2 over cleartext
// TCP (prior knowledge), or over TLS with cfg (ALPN "h2"). A connection
// on which nothing arrives for 5s is pinged and closed when the ping is
// not answered within 5s; a dial (and TLS handshake) is bounded by 5s.
//
// It is golang.org/x/net/http2's transport rather than net/http's: calls
// made together to a master with no usable connection wait for one dial
// and share its connection. net/http's HTTP/2 client dials once per
// waiting call (measured: 1,900 connections from 100 clients of 100
// simulated agents at start, and bursts of up to 7,700 new connections in
// 5 s at 1,000,000 tasks whenever a connection to a master was replaced;
// TestConcurrentCallsShareConnections), and its MaxConnsPerHost, the knob
// that would bound that, is unreliable with HTTP/2 (golang/go#34941).
func h2Transport(cfg *tls.Config) *http2.Transport {
	nd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http2.Transport{
		ReadIdleTimeout: 5 * time.Second,
		PingTimeout:     5 * time.Second,
		IdleConnTimeout: 90 * time.Second,
	}
	if cfg == nil {
		t.AllowHTTP = true
		t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return nd.DialContext(ctx, network, addr)
		}
		return t
	}
	t.TLSClientConfig = cfg.Clone()
	// c is TLSClientConfig as the transport completed it (ALPN "h2", the
	// server name).
	t.DialTLSContext = func(ctx context.Context, network, addr string, c *tls.Config) (net.Conn, error) {
		return (&tls.Dialer{NetDialer: nd, Config: c}).DialContext(ctx, network, addr)
	}
	return t
}
