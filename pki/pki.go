// Package pki creates the private certificate authority and the TLS server
// certificate that a Postern server uses when the operator brings none.
package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/postern-dev/postern/atomicfile"
)

// File names inside the data directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca.key"
	CertFile  = "server.pem"
	KeyFile   = "server.key"
)

// Lifetimes of what EnsureServerCert creates. A server certificate is
// renewed on start when it has less than renewBefore left or lacks a name.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	certLifetime = 397 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// EnsureServerCert makes sure dir holds a CA and a server certificate valid
// for every name in hosts (DNS names or IP addresses), creating or renewing
// what is missing, and returns the certificate to serve and the path of the
// CA bundle that clients should trust.
func EnsureServerCert(dir string, hosts []string, now time.Time) (tls.Certificate, string, error) {
	caCert, caPriv, err := loadOrCreateCA(dir, now)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && covers(c, hosts, now) {
		return c, filepath.Join(dir, CAFile), nil
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := serverTemplate(hosts, "Postern", now, certLifetime)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &priv.PublicKey, caPriv)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("sign server certificate: %w", err)
	}
	if err := writePair(certPath, keyPath, der, priv); err != nil {
		return tls.Certificate{}, "", err
	}
	c, err := tls.LoadX509KeyPair(certPath, keyPath)
	return c, filepath.Join(dir, CAFile), err
}

// EnsureCA makes sure dir holds a CA, creating one when it does not.
func EnsureCA(dir string, now time.Time) error {
	_, _, err := loadOrCreateCA(dir, now)
	return err
}

// covers reports whether c is still fresh and names every host.
func covers(c tls.Certificate, hosts []string, now time.Time) bool {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, h) {
			return false
		}
	}
	return true
}

func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, nil, fmt.Errorf("parse %s: %w", certPath, err)
		}
		priv, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("%s: CA key is not ECDSA", keyPath)
		}
		return leaf, priv, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("load CA from %s: %w", dir, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Postern private CA", Organization: []string{"Postern"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA: %w", err)
	}
	if err := writePair(certPath, keyPath, der, priv); err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	return leaf, priv, err
}

func writePair(certPath, keyPath string, der []byte, priv *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// endpointCertLifetime is how long a certificate issued to an Instance
// Connect Endpoint lives; the endpoint asks for a new one each time it
// joins.
const endpointCertLifetime = 30 * 24 * time.Hour

// IssueLeaf certifies pub (PKIX DER, ECDSA or Ed25519) as a TLS server
// for host with the CA in dir, and returns the chain, leaf first. It fails
// with os.ErrNotExist when dir holds no CA of Postern's (the operator
// brought their own certificate): the caller must then bring its own too.
func IssueLeaf(dir string, pubDER []byte, host string, now time.Time) ([][]byte, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, fmt.Errorf("the public key to certify does not parse: %w", err)
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, errors.New("the public key to certify must be ECDSA or Ed25519")
	}
	tmpl := serverTemplate([]string{host}, "Postern Instance Connect Endpoint", now, endpointCertLifetime)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, pub, pair.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("certify endpoint: %w", err)
	}
	return [][]byte{der, caCert.Raw}, nil
}

// serverTemplate is a TLS server certificate for hosts (DNS names or IP
// addresses), valid from an hour ago for lifetime.
func serverTemplate(hosts []string, org string, now time.Time, lifetime time.Duration) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{org}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}
