package l7

// Re-deciding long-lived connections. Requests and h2c streams are decided
// one by one, so the next one on an open connection meets the rules in
// force. A spliced connection — TLS passthrough, a gateway CONNECT tunnel
// carrying TLS, a 101 upgrade — was decided once, at its start: it records
// what allowed it (a splice on its clientConn) so that Redecide can decide
// it again when the rules change, and Config.MaxSpliceLifetime bounds how
// long it may last at all.

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Reasons a spliced connection is cut (egressd_connections_cut_total).
const (
	cutRulesChanged = "rules_changed"
	cutMaxLifetime  = "max_lifetime"
)

var cutReasons = []string{cutRulesChanged, cutMaxLifetime}

// splice is what allowed a spliced connection, and its two ends.
type splice struct {
	protocol string   // access-log protocol of the connection
	hosts    []string // every name that must still be allowed on port (a tunnel: its target and the TLS server name)
	port     uint16
	rule     string // the rule that allowed it
	client   net.Conn
	up       net.Conn
	cut      atomic.Pointer[string] // why egressd closed it; nil: it did not
}

// beginSplice registers sp as c's splice until the returned end is called
// (when the splice is over; end reports why egressd cut it, "" if it did
// not). sp is decided once more at once: a reload between the decision and
// this registration would otherwise go unseen.
func (p *Proxy) beginSplice(c *clientConn, sp *splice) (end func() string) {
	c.splice.Store(sp)
	var timer *time.Timer
	if d := p.cfg.MaxSpliceLifetime; d > 0 {
		timer = time.AfterFunc(d, func() {
			p.cut(c, sp, cutMaxLifetime, "open for the maximum lifetime of spliced connections ("+d.String()+")")
		})
	}
	p.redecide(c, sp)
	return func() string {
		if timer != nil {
			timer.Stop()
		}
		c.splice.Store(nil)
		if r := sp.cut.Load(); r != nil {
			return *r
		}
		return ""
	}
}

// Redecide decides every spliced connection (TLS passthrough, gateway
// CONNECT tunnel, 101 upgrade) again against the rules in force now (each
// connection's scope's, Config.Scopes, or Config.Rules), and
// closes, client and upstream sides, those that no rule allows any more:
// each is logged with the reason and counted
// (egressd_connections_cut_total{reason="rules_changed"}). It returns how
// many it closed. egressd calls it after every reload that put a new rule
// set in force, global or scoped (rules.ReloaderOptions.OnReload); it does
// not block. In
// audit mode it closes nothing: nothing is denied there.
func (p *Proxy) Redecide() int {
	if p.cfg.Audit {
		return 0
	}
	type open struct {
		c  *clientConn
		sp *splice
	}
	var spliced []open
	p.mu.Lock()
	for c := range p.conns {
		if sp := c.splice.Load(); sp != nil {
			spliced = append(spliced, open{c, sp})
		}
	}
	p.mu.Unlock()
	n := 0
	for _, o := range spliced {
		if p.redecide(o.c, o.sp) {
			n++
		}
	}
	return n
}

// redecide cuts sp when a name it needs is no longer allowed on its port
// by the rules that decide c (its scope's, else Config.Rules); true: it
// cut it now.
func (p *Proxy) redecide(c *clientConn, sp *splice) bool {
	if p.cfg.Audit {
		return false
	}
	src := p.cfg.Rules
	if c.scope.Rules != nil {
		src = c.scope.Rules
	}
	set := src.Current()
	for _, h := range sp.hosts {
		if set != nil {
			if _, ok := set.Match(hostOnly(h), sp.port); ok {
				continue
			}
		}
		return p.cut(c, sp, cutRulesChanged, "no egress rule allows "+hostOnly(h)+" on port "+
			strconv.Itoa(int(sp.port))+" any more (rules changed; rule "+sp.rule+" allowed it)")
	}
	return false
}

// cut closes both ends of sp once, logs why and counts it; false: it was
// cut already.
func (p *Proxy) cut(c *clientConn, sp *splice, code, reason string) bool {
	text := "closed by egressd: " + reason
	if !sp.cut.CompareAndSwap(nil, &text) {
		return false
	}
	sp.client.Close()
	sp.up.Close()
	p.metrics.Cut.WithLabelValues(code).Inc()
	p.log.Warn("spliced connection closed", "reason", reason, "client", c.client, "protocol", sp.protocol,
		"host", strings.Join(sp.hosts, ","), "port", sp.port, "rule", sp.rule)
	return true
}
