package l7

// Re-deciding long-lived connections. Requests and h2c streams are decided
// one by one, so the next one on an open connection meets the rules in
// force. A spliced connection — TLS passthrough, a gateway CONNECT tunnel
// carrying TLS, a 101 upgrade — was decided once, at its start: it records
// what allowed it (a client.Splice on its connection) so that Redecide can decide
// it again when the rules change, and Config.MaxSpliceLifetime bounds how
// long it may last at all.

import (
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd/l7/internal/client"
	"github.com/egressd/egressd/rules"
)

// Reasons a spliced connection is cut (egressd_connections_cut_total).
const (
	cutRulesChanged = "rules_changed"
	cutMaxLifetime  = "max_lifetime"
)

var cutReasons = []string{cutRulesChanged, cutMaxLifetime}

// beginSplice registers sp as c's splice until the returned end is called
// (when the splice is over; end reports why egressd cut it, "" if it did
// not). sp is decided once more at once: a reload between the decision and
// this registration would otherwise go unseen.
func (p *Proxy) beginSplice(c *client.Conn, sp *client.Splice) (end func() string) {
	c.Splice.Store(sp)
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
		c.Splice.Store(nil)
		if r := sp.Cut.Load(); r != nil {
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
		c  *client.Conn
		sp *client.Splice
	}
	var spliced []open
	p.mu.Lock()
	for c := range p.conns {
		if sp := c.Splice.Load(); sp != nil {
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
func (p *Proxy) redecide(c *client.Conn, sp *client.Splice) bool {
	if p.cfg.Audit {
		return false
	}
	src := p.cfg.Rules
	if c.Scope.Rules != nil {
		src = c.Scope.Rules
	}
	set := src.Current()
	for _, h := range sp.Hosts {
		if set != nil {
			if _, ok := set.Match(rules.HostOnly(h), sp.Port); ok {
				continue
			}
		}
		return p.cut(c, sp, cutRulesChanged, "no egress rule allows "+rules.HostOnly(h)+" on port "+
			strconv.Itoa(int(sp.Port))+" any more (rules changed; rule "+sp.Rule+" allowed it)")
	}
	return false
}

// cut closes both ends of sp once, logs why and counts it; false: it was
// cut already.
func (p *Proxy) cut(c *client.Conn, sp *client.Splice, code, reason string) bool {
	text := "closed by egressd: " + reason
	if !sp.Cut.CompareAndSwap(nil, &text) {
		return false
	}
	p.metrics.Cut.With(code).Inc() // before the close: whoever sees the connection end can count it
	sp.Client.Close()
	sp.Up.Close()
	p.log.Warn("spliced connection closed", "reason", reason, "client", c.Client, "protocol", sp.Protocol,
		"host", strings.Join(sp.Hosts, ","), "port", sp.Port, "rule", sp.Rule)
	return true
}
