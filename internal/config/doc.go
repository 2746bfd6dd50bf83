// Package config reads a command's configuration file: a YAML mapping
// whose keys are the command's own flag names, so that a file and a
// command line say the same things in the same words, and each value is
// checked by the flag that takes it. Unknown keys, nested mappings and
// duplicate keys are errors with their line; nothing is guessed.
package config
