package kvservice

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Put writes key=value through the pod at addr (host:port; a follower
// forwards to the primary). A nil error means the write is acknowledged:
// durable on a quorum.
func Put(ctx context.Context, hc *http.Client, addr, key, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		return fmt.Errorf("kvservice: put: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("kvservice: put: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("kvservice: put %s: %s: %s", key, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Get reads key from the pod at addr: found is false for a key it does
// not hold. With consistent the read is answered by the primary once
// everything in its log is durable on a quorum; without, addr answers
// from its own data.
func Get(ctx context.Context, hc *http.Client, addr, key string, consistent bool) (value string, found bool, err error) {
	url := "http://" + addr + "/kv/" + key
	if consistent {
		url += "?consistent=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", false, fmt.Errorf("kvservice: get: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("kvservice: get: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxValueBytes))
	if err != nil {
		return "", false, fmt.Errorf("kvservice: get %s: %w", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return string(body), true, nil
	case http.StatusNotFound:
		return "", false, nil
	}
	return "", false, fmt.Errorf("kvservice: get %s: %s: %s", key, resp.Status, strings.TrimSpace(string(body)))
}
