package http1

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/h1"
)

// FuzzReadRequest feeds arbitrary bytes to the request-head reader and
// checker: it must never panic, and what it accepts must be consistent.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n",
		"GET http://a.allowed.test/x?y HTTP/1.1\r\nHost: evil.test\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"OPTIONS * HTTP/1.0\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		var r h1.Request
		for i := 0; i < 4; i++ { // several requests in a row, as on a keep-alive connection
			if r.ReadHead(br, 1024) != nil || r.Parse() != nil {
				return
			}
			if len(r.Buf) > 1024 {
				t.Fatalf("head of %d bytes over the limit", len(r.Buf))
			}
			status, _ := r.Check()
			if status != 0 {
				return
			}
			if r.Hosts > 1 || r.Minor == 1 && r.Hosts == 0 || r.Chunked && r.ContentLength >= 0 {
				t.Fatalf("accepted ambiguous request %q", r.Buf)
			}
			auth := r.Bytes(r.Authority)
			if len(auth) == 0 || bytes.ContainsAny(auth, "@/ \r\n") {
				t.Fatalf("accepted authority %q", auth)
			}
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			(&h1conn{req: r}).writeRequestHead(bw, nil)
			bw.Flush()
			var again h1.Request
			if again.ReadHead(bufio.NewReader(&out), 1<<20) != nil || again.Parse() != nil {
				t.Fatalf("forwarded head does not parse: %q", out.String())
			}
			if st, _ := again.Check(); st != 0 || !bytes.Equal(again.Bytes(again.Authority), auth) {
				t.Fatalf("forwarded head %q changed meaning (status %d)", out.String(), st)
			}
			pm := body.Pump{Src: br, SrcConn: nopDeadline{}, SrcDL: new(body.Deadline), MaxLines: 1024}
			var err error
			if r.Chunked {
				err = pm.CopyChunked(false)
			} else if r.ContentLength > 0 {
				err = pm.CopyN(r.ContentLength)
			}
			if err != nil {
				return
			}
		}
	})
}

type nopDeadline struct{}

func (nopDeadline) SetReadDeadline(time.Time) error { return nil }
