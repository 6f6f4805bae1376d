package http1

import (
	"bufio"
	"testing"

	"github.com/egressd/egressd/internal/tcptest"
)

// BenchmarkReuseCheck prices the check every pooled connection passes
// before it carries a request (one MSG_PEEK on a loopback socket).
func BenchmarkReuseCheck(b *testing.B) {
	nc, _ := tcptest.Pair(b)
	uc := &upConn{NC: nc, BR: bufio.NewReader(nc)}
	b.ReportAllocs()
	for b.Loop() {
		if !uc.usable() {
			b.Fatal("idle connection judged unusable")
		}
	}
}
