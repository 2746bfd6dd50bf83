// Package samba runs a throwaway smbd with its own configuration and state
// under one folder: the real Samba peers the scanner's lab scans, and the
// file server that the file-server drill attacks through a share. It never
// touches the host's own Samba configuration.
package samba
