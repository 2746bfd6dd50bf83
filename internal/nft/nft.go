package nft

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Run applies script with argv (normally {"nft"}): all of it or none.
func Run(ctx context.Context, argv []string, script string) error {
	_, err := command(ctx, argv, script, "-f", "-")
	return err
}

// Output runs argv with args (a query such as "list set ...") and
// returns what it printed.
func Output(ctx context.Context, argv []string, args ...string) ([]byte, error) {
	return command(ctx, argv, "", args...)
}

func command(ctx context.Context, argv []string, stdin string, args ...string) ([]byte, error) {
	if len(argv) == 0 {
		argv = []string{"nft"}
	}
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string{}, argv[1:]...), args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
