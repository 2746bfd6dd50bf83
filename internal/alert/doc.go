// Package alert writes alerts as JSON Lines with Elastic Common Schema
// field names, one object per line, safe for concurrent writers.
package alert
