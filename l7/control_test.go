package l7

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/egressd/egressd/l7/internal/client"
)

// Config.Control runs on every upstream socket before connect, and on the
// default resolver's; its error fails the dial.
func TestControlRunsOnUpstreamSockets(t *testing.T) {
	u := newUpstream(t, nil)
	var calls atomic.Int32
	var fail atomic.Bool
	p, err := New(Config{
		Rules:         compileRules(t, httpRule("wild", "*.allowed.test", u.port)),
		OriginalDst:   fixedOrig{u.orig()},
		DialMode:      DialOriginal,
		Resolver:      newTestDNS(t).resolver(), // --dial=original checks the name's addresses
		AllowUpstream: testLoopback,
		Control: func(_, _ string, c syscall.RawConn) error {
			calls.Add(1)
			if fail.Load() {
				return errors.New("refused by the hook")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := p.decide(new(client.Entry), "api.allowed.test", u.port)
	nc, err := p.dialer.Upstream(context.Background(), m, "api.allowed.test", u.orig())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if calls.Load() != 1 {
		t.Errorf("Control ran %d times for one dial, want 1", calls.Load())
	}
	fail.Store(true)
	if _, err := p.dialer.Upstream(context.Background(), m, "api.allowed.test", u.orig()); err == nil {
		t.Error("dial succeeded although Control failed")
	}
	if p.cfg.Resolver.Dial == nil {
		t.Error("the default resolver's sockets do not go through Control")
	}
}
