package http1

import (
	"net/http"
	"strconv"
	"time"
)

// local answers with a text response made by egressd and logs the request.
func (s *h1conn) local(status int, reason, marker string, close bool) {
	s.entry.Reason = reason
	b := append(s.scratch[:0], "egressd: "...)
	b = append(b, reason...)
	b = append(b, '\n')
	s.scratch = b
	s.writeLocal(status, b, marker, close)
}

// writeLocal writes a response made by egressd with body, then logs the
// request. close adds "Connection: close" (the caller then closes).
func (s *h1conn) writeLocal(status int, body []byte, marker string, close bool) {
	bw := s.c.BW
	s.c.WDL.SetWrite(s.c.NC, time.Now(), s.srv.cfg.IdleTimeout)
	bw.WriteString("HTTP/1.1 ")
	bw.Write(appendUint(s.num[:0], uint64(status)))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nX-Egressd: ")
	bw.WriteString(marker)
	bw.WriteString("\r\nContent-Length: ")
	bw.Write(appendUint(s.num[:0], uint64(len(body))))
	if close {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if string(s.req.Bytes(s.req.Method)) != "HEAD" {
		bw.Write(body)
		s.entry.BytesOut = int64(len(body))
	}
	s.entry.Status = status
	s.srv.finish(&s.entry) // before the flush, as in relayResponse
	bw.Flush()
}

func appendUint(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }
