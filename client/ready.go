package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"
)

// Ready asks a server's /readyz once, trusting tc's roots, and reports
// nil when the server is ready to serve.
func Ready(ctx context.Context, baseURL string, tc *tls.Config) error {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}
