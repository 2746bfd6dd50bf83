// Package sinkhole answers WannaCry's kill-switch check inside a network
// and names every host that asks.
//
// WannaCry exits when an HTTP GET to its kill-switch domain succeeds. The
// worm is not proxy-aware, so in networks that reach the web only through a
// proxy it never got that answer and kept spreading. The sinkhole is a DNS
// server that answers the kill-switch names with its own address (and
// forwards every other query upstream) plus an HTTP listener that answers
// those names with 200. Only the worm asks for these names, so every host
// that asks is infected: each one raises an alert.
package sinkhole
