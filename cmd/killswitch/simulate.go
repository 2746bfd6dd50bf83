package main

import (
	"fmt"
	"io"

	"github.com/killswitch-dev/killswitch/internal/simulate"
)

func runSimulate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", stderr)
	files := fs.Int("files", 120, "corpus: number of files to make")
	if err := parse(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 1 && a[0] == "list":
		for _, p := range simulate.Profiles() {
			fmt.Fprintf(stdout, "%-18s %s\n", p.Name, p.About)
		}
		return nil
	case len(a) == 2 && a[0] == "corpus":
		m, err := simulate.MakeCorpus(a[1], *files, 2017)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "corpus: %d files in %s\n", len(m.Files), a[1])
		return nil
	case len(a) == 3 && a[0] == "one-file":
		return simulate.OneFile(a[1], a[2])
	case len(a) == 2:
		p, err := simulate.Find(a[0])
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return simulate.Run(p, a[1], stderr)
	}
	return fmt.Errorf("%w: simulate corpus DIR | simulate PROFILE DIR | simulate list", errUsage)
}
