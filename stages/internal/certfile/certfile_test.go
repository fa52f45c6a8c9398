package certfile

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/mediapipe/mediapipe/internal/testcert"
)

func serialOf(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func TestReloadsRenewedPairAndKeepsOldOnBrokenOne(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	first := ca.Issue(t, dir, "srv")
	r, err := Load(first.CertFile, first.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	if got := serialOf(t, r.Certificate()); got != first.Serial.String() {
		t.Fatalf("serial %s, want %s", got, first.Serial)
	}

	// a renewal, seen once the check interval has passed
	second := ca.Issue(t, dir, "srv")
	future := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(second.CertFile, future, future); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, r.Certificate()); got != first.Serial.String() {
		t.Fatalf("reloaded within the check interval")
	}
	clock = clock.Add(checkEvery)
	if got := serialOf(t, r.Certificate()); got != second.Serial.String() {
		t.Fatalf("serial %s after renewal, want %s", got, second.Serial)
	}

	// a half-written renewal keeps the working certificate
	if err := os.WriteFile(second.CertFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(2 * time.Second)
	if err := os.Chtimes(second.CertFile, later, later); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(checkEvery)
	if got := serialOf(t, r.Certificate()); got != second.Serial.String() {
		t.Fatalf("serial %s after a broken renewal, want the working %s", got, second.Serial)
	}
}

func TestLoadRefusesBrokenPair(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	a := ca.Issue(t, dir, "a")
	b := ca.Issue(t, dir, "b")
	if _, err := Load(a.CertFile, b.KeyFile, nil); err == nil {
		t.Fatal("a certificate with another's key loaded")
	}
	if _, err := Load(a.CertFile, "", nil); err == nil {
		t.Fatal("a certificate without a key loaded")
	}
	if _, err := Load(dir+"/missing.crt", a.KeyFile, nil); err == nil {
		t.Fatal("a missing certificate loaded")
	}
}
