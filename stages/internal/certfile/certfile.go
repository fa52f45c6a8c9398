// Package certfile serves a TLS certificate from PEM files and reloads it when
// the files change, so a renewed certificate (certbot, cert-manager) needs no
// restart of the viewer ports.
package certfile

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// checkEvery bounds how often a handshake stats the files: a thousand
// viewers connecting at once cost at most one stat pair a second.
const checkEvery = time.Second

// Reloader holds the certificate of one cert/key pair of files.
type Reloader struct {
	certPath, keyPath string
	log               *slog.Logger
	now               func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	certMod  time.Time // modification times the loaded pair was read at
	keyMod   time.Time
	checked  time.Time
	badSince time.Time // modification time of a pair that failed to load, logged once
}

// Load reads the pair; an unreadable or mismatched pair is an error here,
// so a broken file stops the stage at start rather than at the first viewer.
func Load(certPath, keyPath string, log *slog.Logger) (*Reloader, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("cert and key must be given together")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certPath: certPath, keyPath: keyPath, log: log, now: time.Now}
	certMod, keyMod, err := r.mods()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s: %w", certPath, err)
	}
	r.cert, r.certMod, r.keyMod, r.checked = &cert, certMod, keyMod, r.now()
	return r, nil
}

func (r *Reloader) mods() (certMod, keyMod time.Time, err error) {
	ci, err := os.Stat(r.certPath)
	if err != nil {
		return certMod, keyMod, fmt.Errorf("certificate: %w", err)
	}
	ki, err := os.Stat(r.keyPath)
	if err != nil {
		return certMod, keyMod, fmt.Errorf("key: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

// Certificate returns the current certificate, reloading the files first
// when they changed since the last load. A pair that fails to load (a
// renewal caught half written) keeps the old certificate in service; the
// failure is logged once per change of the files.
func (r *Reloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < checkEvery {
		return r.cert
	}
	r.checked = now
	certMod, keyMod, err := r.mods()
	if err != nil || (certMod.Equal(r.certMod) && keyMod.Equal(r.keyMod)) {
		return r.cert
	}
	cert, err := tls.LoadX509KeyPair(r.certPath, r.keyPath)
	if err != nil {
		if latest := maxTime(certMod, keyMod); !latest.Equal(r.badSince) {
			r.badSince = latest
			r.log.Warn("certificate files changed but do not load; keeping the old one",
				"cert", r.certPath, "err", err)
		}
		return r.cert
	}
	r.cert, r.certMod, r.keyMod = &cert, certMod, keyMod
	r.log.Info("certificate reloaded", "cert", r.certPath)
	return r.cert
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TLSConfig is a server config that asks r for the certificate on every
// handshake; nextProtos are offered by ALPN (e.g. "h2", "http/1.1").
func (r *Reloader) TLSConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.Certificate(), nil
		},
	}
}
