package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzResponseDifferential reads arbitrary bytes as an upstream response
// head with egressd's reader and with net/http.ReadResponse. Whatever
// egressd accepts, net/http must accept too, with the same status and the
// same body framing (length, chunked, until close): a response the two
// frame differently is how one upstream's bytes become another client's
// response. (egressd refuses more — bare LF, obs-fold, control characters —
// which is the safe direction and is not compared.)
func FuzzResponseDifferential(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Head
		if h.ReadHead(bufio.NewReader(bytes.NewReader(data)), 4096) != nil || h.ParseResponse() != nil {
			return
		}
		if h.Status < 200 || h.Status == 204 || h.Status == 304 {
			return // no body to frame
		}
		if h.Minor == 0 && h.TeFields > 0 {
			h.Chunked = false // relay.go reads it until close, as net/http does
		}
		if h.TeOther {
			// Codings before chunked ("gzip, chunked") are relayed chunked
			// for the client to decode, where net/http refuses them; others
			// are read until close and the connection is never pooled.
			return
		}
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: "GET"})
		if err != nil {
			if h.Chunked && h.ContentLength >= 0 || lengthList(&h) {
				// Relayed until close and never pooled (relay.go); or
				// "Content-Length: 3, 3", one length said twice (RFC 9110
				// 8.6), which egressd takes as 3 and net/http refuses.
				return
			}
			t.Fatalf("egressd accepts %q, net/http refuses it: %v", data, err)
		}
		if res.StatusCode != h.Status {
			t.Fatalf("%q: status %d here, %d in net/http", data, h.Status, res.StatusCode)
		}
		if h.Chunked && h.ContentLength >= 0 {
			return // ambiguous: relayed until close, never pooled
		}
		chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[len(res.TransferEncoding)-1] == "chunked"
		switch {
		case h.Chunked != chunked:
			t.Fatalf("%q: chunked %v here, %v in net/http", data, h.Chunked, chunked)
		case !h.Chunked && h.ContentLength != res.ContentLength:
			t.Fatalf("%q: length %d here, %d in net/http", data, h.ContentLength, res.ContentLength)
		}
	})
}

// lengthList reports whether a Content-Length field of h holds a list.
func lengthList(h *Head) bool {
	for i := range h.Fields {
		if f := &h.Fields[i]; f.Kind == fieldContentLength && bytes.IndexByte(h.Bytes(f.Value), ',') >= 0 {
			return true
		}
	}
	return false
}
