package pki

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"testing"
)

// FuzzSignAgent: an enrolment's certificate request comes from anyone
// who can reach the hub, before its token is checked. Whatever it holds,
// the hub errs or signs a client certificate naming the host the hub
// chose, never what the request asked for.
func FuzzSignAgent(f *testing.F) {
	ca, err := LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	_, csr, err := NewAgentKey("evil.example; CN=hub")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certPEM, serial, err := ca.SignAgent(data, "host-42")
		if err != nil {
			return
		}
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "host-42" || cert.SerialNumber.Text(16) != serial ||
			!slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || cert.IsCA {
			t.Fatalf("signed %+v", cert.Subject)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("the certificate it signed does not verify: %v", err)
		}
	})
}

func pool(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
