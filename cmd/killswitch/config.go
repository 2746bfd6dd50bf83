package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/killswitch-dev/killswitch/internal/config"
)

// errConfig marks a configuration file that cannot be used (exit 2).
var errConfig = errors.New("configuration")

// applyConfig sets each flag that the file at path names and the command
// line did not, through the flag itself (so a bad duration or boolean is
// refused as on a command line). It returns the file's positional key.
func applyConfig(fs *flag.FlagSet, path, positional string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConfig, err)
	}
	settings, args, err := config.Parse(data, positional)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errConfig, path, err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	for _, s := range settings {
		if fs.Lookup(s.Key) == nil || s.Key == "config" {
			also := ""
			if positional != "" {
				also = fmt.Sprintf(", and %q", positional)
			}
			return nil, fmt.Errorf("%w: %s:%d: unknown key %q (keys are the flags of 'killswitch %s -h'%s)", errConfig, path, s.Line, s.Key, commandOf(fs), also)
		}
		if onCommandLine[s.Key] {
			continue
		}
		if err := fs.Set(s.Key, s.Value); err != nil {
			return nil, fmt.Errorf("%w: %s:%d: %s: %q: %w", errConfig, path, s.Line, s.Key, s.Value, err)
		}
	}
	return args, nil
}

// commandOf is the subcommand a flag set was made for ("guard").
func commandOf(fs *flag.FlagSet) string {
	name := fs.Name()
	if len(name) > len("killswitch ") {
		return name[len("killswitch "):]
	}
	return name
}
