// Command killswitch is a ransomware defence in one binary: scan finds the
// hosts WannaCry could reach, guard stops a file-encrypting process within
// a few files, restore puts every file back, drill proves it all safely.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/killswitch-dev/killswitch/internal/drill"
	"github.com/killswitch-dev/killswitch/internal/fanotify"
	"github.com/killswitch-dev/killswitch/internal/guard"
	"github.com/killswitch-dev/killswitch/internal/simulate"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// Exit codes (documented in the README).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitFindings    = 3 // drill: something was not stopped or not restored; restore: some files could not be restored
	exitUnsupported = 4 // the kernel or privileges lack what the command needs
)

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

// errFindings marks a run that worked but found a problem to report.
var errFindings = errors.New("findings")

const defaultVault = "/var/lib/killswitch/vault"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, guard.ErrConfig), errors.Is(err, errConfig):
		fmt.Fprintln(stderr, "killswitch:", err)
		return exitUsage
	case errors.Is(err, errFindings):
		fmt.Fprintln(stderr, "killswitch:", err)
		return exitFindings
	case errors.Is(err, fanotify.ErrNotSupported), errors.Is(err, drill.ErrShareTools):
		fmt.Fprintln(stderr, "killswitch:", err)
		return exitUnsupported
	case errors.Is(err, simulate.ErrNotCorpus), errors.Is(err, vault.ErrNotFound):
		fmt.Fprintln(stderr, "killswitch:", err)
		return exitError
	}
	fmt.Fprintln(stderr, "killswitch:", err)
	return exitError
}

const usage = `killswitch: ransomware defence

Usage:
  killswitch scan     [-p 445,139] [--json|--format table|json|csv|sarif] TARGET...
  killswitch hub      [--listen :8443] [--data DIR] [--db URL]   |  hub token  |  hub user NAME --role R
  killswitch sinkhole [--dns :53] [--http :80] [--answer IP] [--upstream RESOLVER]
  killswitch sinkhole check --resolver ADDR
  killswitch guard    [--vault DIR] [--alerts FILE] [--json] [--config FILE] PATH...
  killswitch check    config [--hub] FILE
  killswitch restore  [--vault DIR] --incident ID [--dry-run] [--json] [PATH...]
  killswitch restore  [--vault DIR] --before TIME [--dry-run] [--json] PATH...
  killswitch incidents [--vault DIR] [--json]
  killswitch vault check|prune [--vault DIR]
  killswitch execblock list|block SHA256|unblock SHA256 [--state FILE]
  killswitch cutoff   list|release ADDRESS
  killswitch simulate corpus DIR | simulate PROFILE DIR | simulate list
  killswitch drill    [--profile NAME|all] [--keep] [--hub] [--share]

Run 'killswitch COMMAND -h' for a command's flags. See README.md.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "scan":
		return runScan(ctx, rest, stdout, stderr)
	case "hub":
		return runHub(ctx, rest, stdout, stderr)
	case "sinkhole":
		return runSinkhole(ctx, rest, stdout, stderr)
	case "guard":
		return runGuard(ctx, rest, stdout, stderr)
	case "restore":
		return runRestore(ctx, rest, stdout, stderr)
	case "incidents":
		return runIncidents(rest, stdout, stderr)
	case "vault":
		return runVault(rest, stdout, stderr)
	case "execblock":
		return runExecblock(ctx, rest, stdout, stderr)
	case "cutoff":
		return runCutoff(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "simulate":
		return runSimulate(rest, stdout, stderr)
	case "drill":
		return runDrill(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("killswitch "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// version is the module version the binary was built from.
var version = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}()

// parseInterspersed parses flags that may come before, between or after
// the positional arguments (killswitch scan 10.0.0.0/24 --json), and
// returns the positional ones. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos, tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parse parses flags, mapping mistakes to errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}
