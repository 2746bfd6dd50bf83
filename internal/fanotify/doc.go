// Package fanotify is killswitch's only door to the kernel's fanotify API.
//
// It owns group creation, marks (directory marks and ignore-until-modified
// marks), permission responses and a decoder for the kernel's event buffer
// that never panics on bad input. Everything above it speaks in Events.
package fanotify
