package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureServerCertServesTLSTrustedByCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	cert, caPath, err := EnsureServerCert(dir, []string{"127.0.0.1", "localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{CAKeyFile: 0o600, KeyFile: 0o600, CAFile: 0o644, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
	}
}

func TestEnsureServerCertReusesAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	first, _, err := EnsureServerCert(dir, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := EnsureServerCert(dir, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Certificate[0]) != string(again.Certificate[0]) {
		t.Error("a fresh certificate was replaced")
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, CAFile))
	// A new name, or a certificate close to expiry, is re-issued by the same CA.
	named, _, err := EnsureServerCert(dir, []string{"127.0.0.1", "postern.internal"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(named.Certificate[0]) == string(first.Certificate[0]) {
		t.Error("certificate not re-issued for a new host name")
	}
	late, _, err := EnsureServerCert(dir, []string{"127.0.0.1", "postern.internal"}, now.Add(certLifetime-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if string(late.Certificate[0]) == string(named.Certificate[0]) {
		t.Error("certificate near expiry not renewed")
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(caBefore) != string(caAfter) {
		t.Error("CA changed; clients would lose trust")
	}
}

func TestIssueLeaf(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := IssueLeaf(dir, nil, "edge.example", now); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("without a CA: %v, want os.ErrNotExist", err)
	}
	if _, _, err := EnsureServerCert(dir, []string{"localhost"}, now); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := IssueLeaf(dir, []byte("junk"), "edge.example", now); err == nil {
		t.Fatal("a junk public key was certified")
	}
	for _, host := range []string{"edge.example", "10.0.0.7"} {
		chain, err := IssueLeaf(dir, pub, host, now)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(chain[0])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		ca, _ := x509.ParseCertificate(chain[1])
		pool.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: now}); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example", Roots: pool, CurrentTime: now}); err == nil {
			t.Fatalf("%s: certificate also valid for another host", host)
		}
	}
}
