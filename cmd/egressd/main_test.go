package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// admin server, the rules watcher and the proxy must all stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
