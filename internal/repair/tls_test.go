package repair

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for "localhost" and its key as
// PEM files; the certificate is its own CA.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	c, err := SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestCertificateVerification(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "cloud")
	other, _ := writeCert(t, dir, "other")
	srv := startServer(t, ServerConfig{CertFile: cert, KeyFile: key})
	addr := srv.Addr().String()

	// Trusting the cloud's certificate: connects.
	c := dial(t, ClientConfig{Addr: addr, CAFile: cert, ServerName: "localhost"})
	connected(t, c)

	// Trusting another CA: the handshake fails, nothing is asked.
	bad := dial(t, ClientConfig{Addr: addr, CAFile: other, ServerName: "localhost", MinBackoff: 10 * time.Millisecond})
	deadline := time.Now().Add(3 * time.Second)
	for bad.LastError() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if bad.LastError() == nil || bad.Connected() {
		t.Fatalf("connected to a server signed by an untrusted CA (%v)", bad.LastError())
	}

	if _, err := ServerTLS(cert, ""); err == nil {
		t.Fatal("cert without key accepted")
	}
	if _, err := ClientTLS(filepath.Join(dir, "missing.pem"), "x"); err == nil {
		t.Fatal("missing CA file accepted")
	}
}
