// Package pki is the hub's own certificate authority: an ECDSA P-256 CA
// made on first start, the hub's server certificate, and client
// certificates for enrolled agents (the host ID is the subject's common
// name). ECDSA because Go's TLS handshakes are far cheaper with it than
// with RSA at fleet scale.
package pki
