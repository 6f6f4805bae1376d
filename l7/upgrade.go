package l7

import (
	"time"

	"github.com/egressd/egressd/l7/internal/bridge"
)

// spliceUpgrade relays a 101 Switching Protocols response and then copies
// bytes both ways until both directions end (splice, l7/internal/bridge). uc is
// never reused.
func (s *h1conn) spliceUpgrade(uc *upConn) {
	s.writeResponseHead(false, false)
	s.entry.status = 101
	// Bytes the upstream sent right after its 101 are already in uc.br.
	if n := uc.br.Buffered(); n > 0 {
		b, _ := uc.br.Peek(n)
		s.c.bw.Write(b)
		s.entry.bytesOut += int64(n)
	}
	if err := s.c.bw.Flush(); err != nil {
		uc.nc.Close()
		s.p.finish(&s.entry)
		return
	}
	s.c.nc.SetDeadline(time.Time{})
	uc.nc.SetDeadline(time.Time{})
	end := s.p.beginSplice(s.c, &splice{protocol: "upgrade", hosts: []string{s.entry.host}, port: s.entry.port, rule: s.entry.rule, client: s.c.nc, up: uc.nc})
	in, out, err := bridge.Conns(s.c.nc, s.c.br, uc.nc, s.p.cfg.IdleTimeout)
	s.entry.bytesIn += in
	s.entry.bytesOut += out
	if cut := end(); cut != "" {
		s.entry.reason = cut
	} else if err != nil {
		s.entry.reason = "upgraded connection failed: " + err.Error()
	}
	uc.nc.Close()
	s.p.finish(&s.entry)
}
