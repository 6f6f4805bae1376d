package http1

import (
	"time"

	"github.com/egressd/egressd/l7/internal/bridge"
	"github.com/egressd/egressd/l7/internal/client"
)

// spliceUpgrade relays a 101 Switching Protocols response and then copies
// bytes both ways until both directions end (splice, l7/internal/bridge). uc is
// never reused.
func (s *h1conn) spliceUpgrade(uc *upConn) {
	s.writeResponseHead(false, false)
	s.entry.Status = 101
	// Bytes the upstream sent right after its 101 are already in uc.br.
	if n := uc.BR.Buffered(); n > 0 {
		b, _ := uc.BR.Peek(n)
		s.c.BW.Write(b)
		s.entry.BytesOut += int64(n)
	}
	if err := s.c.BW.Flush(); err != nil {
		uc.NC.Close()
		s.srv.finish(&s.entry)
		return
	}
	s.c.NC.SetDeadline(time.Time{})
	uc.NC.SetDeadline(time.Time{})
	end := s.srv.host.BeginSplice(s.c, &client.Splice{Protocol: "upgrade", Hosts: []string{s.entry.Host}, Port: s.entry.Port, Rule: s.entry.Rule, Client: s.c.NC, Up: uc.NC})
	in, out, err := bridge.Conns(s.c.NC, s.c.BR, uc.NC, s.srv.cfg.IdleTimeout)
	s.entry.BytesIn += in
	s.entry.BytesOut += out
	if cut := end(); cut != "" {
		s.entry.Reason = cut
	} else if err != nil {
		s.entry.Reason = "upgraded connection failed: " + err.Error()
	}
	uc.NC.Close()
	s.srv.finish(&s.entry)
}
