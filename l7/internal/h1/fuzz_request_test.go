package h1

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// FuzzRequestDifferential reads arbitrary bytes as a client's request head
// with egressd's reader (readHead, parse, check: what serveHTTP1 does
// before the rules are asked) and with net/http's server (http.ReadRequest
// plus the checks its Server makes next, netHTTPServerReads). Both must
// take the same decision, and on what both accept, see the same method,
// target, authority and body framing (length or chunked): a request two
// HTTP readers frame differently is how a smuggled request gets past the
// decision. Where egressd refuses what net/http serves, or serves what it
// refuses, the difference is egressd's choice and is named below with its
// reason (egressdStricter, egressdLaxer); anything else fails.
func FuzzRequestDifferential(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n",
		"GET http://a.allowed.test/x?y HTTP/1.1\r\nHost: evil.test\r\n\r\n",
		"POST /up HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"OPTIONS * HTTP/1.0\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET /%zz HTTP/1.1\r\nHost: u@a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := r.ReadHead(bufio.NewReader(bytes.NewReader(data)), 1<<20)
		if err == nil {
			err = r.Parse()
		}
		status, reason := 0, ""
		if err == nil {
			status, reason = r.Check()
		}
		// readHead skips up to 4 empty lines before the request line (RFC
		// 9112 2.2: SHOULD ignore at least one); net/http's server does so
		// only after a POST. Give it the head without them.
		lead := data
		for i := 0; i < maxLeadingBlankLines && bytes.HasPrefix(lead, []byte("\r\n")); i++ {
			lead = lead[2:]
		}
		req, nerr := netHTTPServerReads(lead)
		switch {
		case err == nil && status == 0 && nerr != nil:
			if why := egressdLaxer(&r, req, nerr); why == "" {
				t.Fatalf("egressd accepts %q, net/http refuses it: %v", data, nerr)
			}
			return
		case (err != nil || status != 0) && nerr == nil:
			if why := egressdStricter(lead, &r, err, status, reason, req); why == "" {
				t.Fatalf("net/http accepts %q (%s %s, Host %q), egressd refuses it: %v %d %s",
					data, req.Method, req.RequestURI, req.Host, err, status, reason)
			}
			return
		case nerr != nil:
			return // both refuse
		}
		if string(r.Bytes(r.Method)) != req.Method || string(r.Bytes(r.Target)) != req.RequestURI {
			t.Fatalf("%q: request line %q %q here, %q %q in net/http",
				data, r.Bytes(r.Method), r.Bytes(r.Target), req.Method, req.RequestURI)
		}
		if string(r.Bytes(r.Authority)) != req.Host {
			t.Fatalf("%q: authority %q here, %q in net/http", data, r.Bytes(r.Authority), req.Host)
		}
		chunked := len(req.TransferEncoding) > 0
		length := max(r.ContentLength, 0)
		switch {
		case r.Chunked != chunked:
			t.Fatalf("%q: chunked %v here, %v in net/http", data, r.Chunked, chunked)
		case !r.Chunked && length != req.ContentLength:
			t.Fatalf("%q: length %d here, %d in net/http", data, length, req.ContentLength)
		}
	})
}

// netHTTPServerReads is what net/http's Server does with a request head
// before its handler runs: http.ReadRequest, then the checks of
// (*conn).readRequest (HTTP/1.x only, or the h2c preface; Host required in
// HTTP/1.1 but for CONNECT; Host bytes, field names and values valid) and
// of (*conn).serve (an Expect other than 100-continue gets 417).
func netHTTPServerReads(data []byte) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, err
	}
	if req.ProtoMajor != 1 && !(req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*") {
		return nil, errors.New("505 unsupported protocol version")
	}
	// ReadRequest deletes the Host fields from req.Header; the Server
	// checks them first. Read them again as readRequest did.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	if _, err := tp.ReadLine(); err != nil {
		return nil, err
	}
	fields, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	hosts, haveHost := fields["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return nil, errors.New("400 missing required Host header")
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return nil, errors.New("400 malformed Host header")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, errors.New("400 invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, errors.New("400 invalid header value")
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !httpguts.HeaderValuesContainsToken([]string{e}, "100-continue") {
		return nil, errors.New("417 expectation failed")
	}
	return req, nil
}

// egressdStricter names the reason egressd refuses a request head that
// net/http's server accepts as req; "" when there is none (a bug). data is
// the head as net/http read it.
func egressdStricter(data []byte, r *Request, err error, status int, reason string, req *http.Request) string {
	switch {
	case req.Method == "CONNECT":
		// Refused whatever its target (even one net/http reads as
		// empty: "CONNECT  HTTP/1.0"): 405, or 400 for what does not parse.
		return "CONNECT: redirected connections are not tunnels"
	case errors.Is(err, ErrBareLF):
		// A line ended by LF alone: readers that disagree on where a
		// line ends disagree on where the head ends (smuggling).
		return "bare LF"
	case errors.Is(err, ErrHeadTooLarge):
		return "over maxFields: bounds the work per head"
	case errors.Is(err, ErrVersion) && req.ProtoMajor == 2 && req.Method == "PRI":
		return "the h2c preface: sniffed before the HTTP/1 reader (serveH2C)"
	case errors.Is(err, ErrVersion) && req.ProtoMajor == 1:
		return "HTTP/1.2 and later minor versions: 505 (egressd speaks 1.0 and 1.1)"
	case errors.Is(err, ErrMalformed) && obsFold(data):
		// RFC 9112 5.2: a server MUST reject obs-fold or replace it.
		return "obs-fold"
	case errors.Is(err, ErrMalformed) && connTokens(req) > MaxConnTokens:
		return "over maxConnTokens names in Connection: bounds the work per head"
	case err != nil:
		return ""
	}
	switch reason {
	case "both Content-Length and Transfer-Encoding":
		// RFC 9112 6.1: MAY be refused; net/http lets chunked win.
		return "Content-Length with Transfer-Encoding (smuggling)"
	case "Transfer-Encoding in an HTTP/1.0 request":
		// net/http ignores it and reads Content-Length: a reader that
		// did not would frame the body differently.
		return "Transfer-Encoding in HTTP/1.0 (smuggling)"
	case "unsupported expectation (only 100-continue is)":
		// net/http ignores members besides a 100-continue in a list.
		return "an Expect list with another expectation: 417"
	case "invalid Host header field", "invalid authority in the absolute-form request target":
		// net/http only checks the Host's bytes; egressd decides on the
		// authority, so it takes only reg-name, IPv4 or [IPv6] with a
		// numeric port, no userinfo.
		return "an authority that is not host[:port]"
	case "invalid request target":
		// net/http takes "*" with any method and absolute URIs of any
		// scheme; a proxy for http(s) takes RFC 9112 3.2's forms.
		return "a target that is not origin-form, http(s) absolute-form or OPTIONS *"
	case "no authority: the request needs a Host header field":
		return "no authority to decide on (HTTP/1.0 without Host, or an empty one)"
	}
	return ""
}

// egressdLaxer names the reason egressd accepts a request head that
// net/http's server refuses with nerr; "" when there is none (a bug).
// egressd forwards its own framing (writeRequestHead: one Content-Length
// or "Transfer-Encoding: chunked", one Host), so what it accepts here
// reaches the upstream in one unambiguous form.
func egressdLaxer(r *Request, _ *http.Request, nerr error) string {
	switch {
	case lengthList(&r.Head):
		// RFC 9110 8.6: one length said twice ("3, 3") may be taken as
		// that length; net/http refuses the list.
		return "a Content-Length list of one value"
	case r.Chunked && !r.TeOther && strings.Contains(nerr.Error(), "unsupported transfer encoding"):
		// RFC 9110 5.6.1: a recipient MUST ignore empty list elements
		// ("chunked,"); net/http wants the value "chunked" alone.
		return "Transfer-Encoding chunked with empty list elements"
	case r.Minor == 0 && r.expectOther && strings.HasPrefix(nerr.Error(), "417"):
		// RFC 9110 10.1.1: an HTTP/1.0 request's Expect is ignored (and
		// not forwarded); net/http answers 417 whatever the version.
		return "Expect in HTTP/1.0"
	}
	return ""
}

// obsFold reports whether a field line of the head in data starts with
// SP or HTAB (a continuation line).
func obsFold(data []byte) bool {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(data)
	}
	return bytes.Contains(data[:end], []byte("\n ")) || bytes.Contains(data[:end], []byte("\n\t"))
}

// connTokens counts the names in req's Connection fields.
func connTokens(req *http.Request) int {
	n := 0
	for _, v := range req.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(tok) != "" {
				n++
			}
		}
	}
	return n
}
