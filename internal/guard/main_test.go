package guard

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: this
// package owns long-running goroutines (loops, workers, committers).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
