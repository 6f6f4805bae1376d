package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An upload endpoint that answers 413 at once and never reads the body:
// the client gets the 413, not a 502, and the connection is closed after
// it (the rest of the upload is cut).
func TestEarlyAnswerToAnUploadIsRelayed(t *testing.T) {
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	big := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 12_500_000), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := curl(t, e, fmt.Sprintf("http://up.allowed.test:%d/upload", u.port),
		"-H", "Expect:", "--data-binary", "@"+big)
	if code != 413 || !strings.Contains(body, "too large") {
		t.Fatalf("curl got %d %q, want the upstream's 413", code, body)
	}
	mustContain(t, e.logs.String(), `"status":413`)

	// An upstream that answers on the head alone and then neither reads nor
	// closes: the answer must not wait for a body it will never take.
	su := newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large")
		time.Sleep(2 * time.Second)
	})
	se := scriptedEnv(t, su, nil)
	code, body = curl(t, se, fmt.Sprintf("http://up.allowed.test:%d/upload", su.port),
		"-H", "Expect:", "--data-binary", "@"+big)
	if code != 413 || body != "too large" {
		t.Fatalf("silent upstream: curl got %d %q, want its 413", code, body)
	}
}

// Expect: 100-continue goes to the upstream, whose 100 is relayed (egressd
// does not answer it itself); an upstream refusing before the body is
// relayed and no body is needed.
func TestExpectContinueReachesTheUpstream(t *testing.T) {
	e, u := allowEnv(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "accepted") // the recorder has read the body: net/http sent its 100 then
	})
	rc := e.dial()
	rc.send("POST /accept HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	resp, _ := rc.read("POST")
	if resp.StatusCode != 100 {
		t.Fatalf("got %d before the body, want the upstream's 100", resp.StatusCode)
	}
	rc.send("body")
	if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "accepted" {
		t.Fatalf("after 100: %d %q", resp.StatusCode, body)
	}
	// The upstream's recorder reads the body first; it saw the Expect field.
	if got := u.next(t); got.Header.Get("Expect") != "100-continue" || got.Body != "body" {
		t.Fatalf("upstream saw Expect %q body %q", got.Header.Get("Expect"), got.Body)
	}

	// An upstream that refuses on the head alone, never reading the body.
	su := newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		u.reqs <- r
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 11\r\n\r\nwho are you")
	})
	refused := scriptedEnv(t, su, nil).dial()
	refused.send("POST /refuse HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
	if resp, body := refused.read("POST"); resp.StatusCode != 401 || !strings.Contains(body, "who are you") {
		t.Fatalf("refusal: %d %q, want the upstream's 401 without sending the body", resp.StatusCode, body)
	}
	if r := <-su.reqs; r.Header.Get("Expect") != "100-continue" {
		t.Fatalf("refusing upstream saw Expect %q", r.Header.Get("Expect"))
	}
}

func TestOtherExpectationsGet417(t *testing.T) {
	e, u := allowEnv(t, nil)
	rc := e.dial()
	rc.send("POST / HTTP/1.1\r\nHost: a.allowed.test\r\nContent-Length: 1\r\nExpect: telepathy\r\n\r\nx")
	if resp, _ := rc.read("POST"); resp.StatusCode != 417 {
		t.Fatalf("got %d, want 417", resp.StatusCode)
	}
	u.none(t)
}

// Full duplex: the upstream streams its answer while it reads the body, and
// the client reads that answer while it is still sending.
func TestResponseFlowsWhileTheBodyIsSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(w, "echo "+line)
			w.(http.Flusher).Flush()
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e := scriptedEnv(t, &scriptedUpstream{port: uint16(ln.Addr().(*net.TCPAddr).Port)}, nil)
	rc := e.dial()
	rc.send("POST /duplex HTTP/1.1\r\nHost: a.allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "POST"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("head before the end of the body: %v %v", resp, err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		rc.send(fmt.Sprintf("%x\r\n%s\r\n", len(line), line))
		got, err := br.ReadString('\n')
		if err != nil || got != "echo "+line {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	rc.send("0\r\n\r\n")
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end: %q %v", rest, err)
	}
}

// interimUpstream answers with n 1xx responses (102), then 200.
func interimUpstream(t *testing.T, n int) *scriptedUpstream {
	return newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
		if _, err := u.readRequest(br); err != nil {
			return
		}
		io.WriteString(c, strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", n)+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
}

func TestInterimResponsesAreCapped(t *testing.T) {
	for _, tc := range []struct {
		n      int
		status int
	}{{5, 200}, {6, 502}} {
		u := interimUpstream(t, tc.n)
		e := scriptedEnv(t, u, nil)
		rc := e.dial()
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		resp, body := rc.read("GET")
		for resp.StatusCode == 102 {
			resp, body = rc.read("GET")
		}
		if resp.StatusCode != tc.status {
			t.Fatalf("%d interim responses: got %d %q, want %d", tc.n, resp.StatusCode, body, tc.status)
		}
	}
}

func TestReasonPhraseIsChecked(t *testing.T) {
	for _, tc := range []struct {
		line   string
		status int
	}{{"HTTP/1.1 200 All fine\tand\x80dandy", 200}, {"HTTP/1.1 200 O\x01K", 502}, {"HTTP/1.1 200 OK\x7f", 502}} {
		u := newRawUpstream(t, tc.line+"\r\nContent-Length: 2\r\n\r\nok")
		e := scriptedEnv(t, &scriptedUpstream{port: u.port}, nil)
		rc := e.dial()
		rc.send("GET / HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != tc.status {
			t.Fatalf("%q: got %d %q, want %d", tc.line, resp.StatusCode, body, tc.status)
		}
	}
}
