package l7

import (
	"bufio"
	"bytes"
	"testing"
	"time"
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
		var r request
		for i := 0; i < 4; i++ { // several requests in a row, as on a keep-alive connection
			if r.readHead(br, 1024) != nil || r.parse() != nil {
				return
			}
			if len(r.buf) > 1024 {
				t.Fatalf("head of %d bytes over the limit", len(r.buf))
			}
			status, _ := r.check()
			if status != 0 {
				return
			}
			if r.hosts > 1 || r.minor == 1 && r.hosts == 0 || r.chunked && r.contentLength >= 0 {
				t.Fatalf("accepted ambiguous request %q", r.buf)
			}
			auth := r.bytes(r.authority)
			if len(auth) == 0 || bytes.ContainsAny(auth, "@/ \r\n") {
				t.Fatalf("accepted authority %q", auth)
			}
			var out bytes.Buffer
			bw := bufio.NewWriter(&out)
			(&h1conn{req: r}).writeRequestHead(bw, nil)
			bw.Flush()
			var again request
			if again.readHead(bufio.NewReader(&out), 1<<20) != nil || again.parse() != nil {
				t.Fatalf("forwarded head does not parse: %q", out.String())
			}
			if st, _ := again.check(); st != 0 || !bytes.Equal(again.bytes(again.authority), auth) {
				t.Fatalf("forwarded head %q changed meaning (status %d)", out.String(), st)
			}
			pm := pump{src: br, srcConn: nopDeadline{}, srcDL: new(deadline), maxLines: 1024}
			var err error
			if r.chunked {
				err = pm.copyChunked(false)
			} else if r.contentLength > 0 {
				err = pm.copyN(r.contentLength)
			}
			if err != nil {
				return
			}
		}
	})
}

type nopDeadline struct{}

func (nopDeadline) SetReadDeadline(time.Time) error { return nil }
