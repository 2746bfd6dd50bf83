package config

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Setting is one key of the file, with its value as the flag of the same
// name would be given it on a command line (a list joined with commas).
type Setting struct {
	Key, Value string
	Line       int
}

// MaxSize bounds a file: a configuration is a few lines, and a YAML
// parser's cost on hostile input grows faster than its size.
const MaxSize = 64 << 10

// ErrInvalid is wrapped by every error about the file's content.
var ErrInvalid = errors.New("invalid configuration")

// Parse reads data, a YAML mapping. The key named positional holds the
// command's positional arguments (a list, or one value) and is returned
// apart; every other key becomes a Setting, in the file's order.
func Parse(data []byte, positional string) (settings []Setting, args []string, err error) {
	if len(data) > MaxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes; a configuration is at most %d", ErrInvalid, len(data), MaxSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%w: line %d: want a mapping of keys to values", ErrInvalid, root.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, nil, fmt.Errorf("%w: line %d: a key must be a name", ErrInvalid, k.Line)
		}
		if seen[k.Value] {
			return nil, nil, fmt.Errorf("%w: line %d: %s is given twice", ErrInvalid, k.Line, k.Value)
		}
		seen[k.Value] = true
		values, err := scalars(v)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: line %d: %s: %v", ErrInvalid, v.Line, k.Value, err)
		}
		if k.Value == positional {
			args = values
			continue
		}
		for _, s := range values {
			if strings.Contains(s, ",") && len(values) > 1 {
				return nil, nil, fmt.Errorf("%w: line %d: %s: %q holds a comma, which separates list items", ErrInvalid, v.Line, k.Value, s)
			}
		}
		settings = append(settings, Setting{Key: k.Value, Value: strings.Join(values, ","), Line: k.Line})
	}
	return settings, args, nil
}

// scalars is a value, or the items of a list of values.
func scalars(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, errors.New("no value")
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return nil, errors.New("a list may hold only values")
			}
			out = append(out, item.Value)
		}
		return out, nil
	case yaml.AliasNode:
		return nil, errors.New("aliases are not allowed")
	}
	return nil, errors.New("want a value or a list of values")
}
