package l7

import (
	"net"
	"time"
)

// splice relays a 101 Switching Protocols response and then copies bytes
// both ways until both directions end. uc is never reused.
func (s *h1conn) splice(uc *upConn) {
	s.writeResponseHead(false, false)
	s.entry.status = 101
	if err := s.c.bw.Flush(); err != nil {
		uc.nc.Close()
		s.p.finish(&s.entry)
		return
	}
	s.c.nc.SetDeadline(time.Time{})
	uc.nc.SetDeadline(time.Time{})
	up := make(chan int64, 1)
	go func() {
		n, _ := s.c.br.WriteTo(uc.nc) // buffered bytes first, then the socket
		closeWrite(uc.nc)
		up <- n
	}()
	n, _ := uc.br.WriteTo(s.c.nc)
	closeWrite(s.c.nc)
	// The upstream is done; give the client direction a moment to finish,
	// then cut it so no goroutine outlives the connection.
	s.c.nc.SetReadDeadline(time.Now().Add(s.p.cfg.IdleTimeout))
	s.entry.bytesIn += <-up
	s.entry.bytesOut = n
	uc.nc.Close()
	s.p.finish(&s.entry)
}

// closeWrite half-closes c when it can (TCP, TLS), else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
