// Package content tells what a sample of file bytes looks like: its type
// by magic bytes, whether it is random (ciphertext), random hidden in a
// low-entropy encoding, a compressed stream that really decodes, or a wipe;
// and how a new version differs from the one before it. It is pure code:
// no I/O, no clock, deterministic for the detector's golden tests.
package content
