package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMDrainsInFlightRequests starts a request whose body arrives
// slowly, sends SIGTERM, checks that the server stops taking new work, and
// then finishes the request: it must complete, and the process must exit
// cleanly within the shutdown grace.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	const grace = 5 * time.Second // as defaultServerArgs say

	hr := s.build(t, request{Form: ec2Form("DescribeVpcs"), Creds: s.admin()})
	body, err := io.ReadAll(hr.Body)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", hr.URL.Host, s.tlsConfig())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	// Expect: 100-continue makes the server say when its handler starts
	// reading the body: from then on the request is in flight. (A request
	// whose headers are still arriving at SIGTERM is dropped by net/http,
	// so it would prove nothing.)
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n", hr.URL.Host, len(body))
	for k, vs := range hr.Header {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		t.Fatalf("send the headers: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	in := bufio.NewReader(conn)
	status, err := in.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100 ") {
		t.Fatalf("the server did not answer 100 Continue: %q, %v", status, err)
	}
	if blank, err := in.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q, %v", blank, err)
	}
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatalf("send half the body: %v", err)
	}

	sigterm := time.Now()
	s.terminate(t)
	if _, ok := s.Log.await("shutting down", s.exited, 10*time.Second); !ok {
		t.Fatalf("the server did not log that it is shutting down:\n%s", s.Log)
	}
	// New work is refused: /readyz says 503 or nothing listens any more.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: s.tlsConfig(), DisableKeepAlives: true}, Timeout: 2 * time.Second}
	waitFor(t, "/readyz to fail after SIGTERM", 3*time.Second, func() bool {
		resp, err := probe.Get(s.URL + "/readyz")
		if err != nil {
			return errors.Is(err, syscall.ECONNREFUSED)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	select {
	case <-s.exited:
		t.Fatalf("the server exited while a request was in flight:\n%s", s.Log)
	default:
	}

	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatalf("send the rest of the body: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(grace))
	resp, err := http.ReadResponse(in, nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v\nlog:\n%s", err, s.Log)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), "<DescribeVpcsResponse") {
		t.Fatalf("the in-flight request got %s:\n%s", resp.Status, answer)
	}

	select {
	case <-s.exited:
	case <-time.After(grace + 2*time.Second):
		t.Fatalf("the server did not exit within the %s grace after the request completed:\n%s", grace, s.Log)
	}
	if took := time.Since(sigterm); took > grace+2*time.Second {
		t.Errorf("the server took %s to exit after SIGTERM; the grace is %s", took, grace)
	}
	s.Stop(t) // reports the exit status
	if !strings.Contains(s.Log.String(), "stopped") {
		t.Errorf("the server did not log that it stopped:\n%s", s.Log)
	}
}

// TestDrainDelayKeepsServingWhileNotReady checks --drain-delay: after
// SIGTERM the server keeps answering API calls while /readyz says 503, so
// a load balancer can take it out of rotation before the listener closes.
func TestDrainDelayKeepsServingWhileNotReady(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--drain-delay", "3s")
	s.terminate(t)
	if _, ok := s.Log.await("draining", s.exited, 10*time.Second); !ok {
		t.Fatalf("the server did not log that it is draining:\n%s", s.Log)
	}
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: s.tlsConfig(), DisableKeepAlives: true}, Timeout: 2 * time.Second}
	resp, err := probe.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatalf("/readyz during the drain delay: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain delay = %s, want 503", resp.Status)
	}
	hr := s.build(t, request{Form: ec2Form("DescribeVpcs"), Creds: s.admin()})
	hr.Close = true
	api := &http.Client{Transport: &http.Transport{TLSClientConfig: s.tlsConfig(), DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err = api.Do(hr)
	if err != nil {
		t.Fatalf("an API call during the drain delay failed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("an API call during the drain delay = %s, want 200", resp.Status)
	}
	select {
	case <-s.exited:
		t.Fatal("the server exited before its drain delay ended")
	default:
	}
	s.Stop(t)
}
