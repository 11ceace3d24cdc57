package framework

import (
	"fmt"

	"github.com/agora-sched/agora/rpc/client"
)

// tlsOptions loads Config.TLS into a client option; none when TLS is off.
func (cfg *Config) tlsOptions() ([]client.Option, error) {
	b, err := cfg.TLS.Load()
	if err != nil {
		return nil, fmt.Errorf("framework: %w", err)
	}
	if b == nil {
		return nil, nil
	}
	return []client.Option{client.WithTLS(b.ClientConfig(cfg.Cluster))}, nil
}
