package repair

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/mediapipe/mediapipe/core/media/repairwire"
)

// ServerTLS returns the server's TLS 1.3 config with ALPN: the certificate
// and key from files when both are given, else a fresh self-signed P-256
// certificate (the token, not the certificate, authenticates the peers).
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case certFile != "" && keyFile != "":
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("repair: load certificate: %w", err)
		}
	case certFile != "" || keyFile != "":
		return nil, errors.New("repair: cert and key must be given together")
	default:
		cert, err = SelfSigned("mediapipe-rtx")
		if err != nil {
			return nil, err
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{repairwire.ALPN},
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// SelfSigned makes a self-signed P-256 certificate for name, valid for a year.
func SelfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("repair: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("repair: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("repair: create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ClientTLS returns the client's TLS config. With no CA file the server's
// certificate is not verified (the cloud's certificate is usually
// self-signed; the token authenticates). With caFile, the server must
// present a certificate for serverName signed by it.
func ClientTLS(caFile, serverName string) (*tls.Config, error) {
	conf := &tls.Config{NextProtos: []string{repairwire.ALPN}, MinVersion: tls.VersionTLS13, ServerName: serverName}
	if caFile == "" {
		conf.InsecureSkipVerify = true
		return conf, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("repair: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("repair: no certificate in %s", caFile)
	}
	conf.RootCAs = pool
	return conf, nil
}
