package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// pausingHandler sends the head and a first part, pauses for pause (longer
// than the response timeout of the tests), then sends the rest.
func pausingHandler(pause time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		select {
		case <-time.After(pause):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second")
	}
}

// wantWholePoll asks for /poll over h2c and wants its whole body.
func wantWholePoll(t *testing.T, client *http.Client) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://proxy/poll", nil)
	req.Host = "api.allowed.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if b, err := io.ReadAll(res.Body); err != nil || string(b) != "first second" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func wantWholePollHTTP1(t *testing.T, rc *rawClient) {
	t.Helper()
	rc.send("GET /poll HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "first second" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// --response-timeout bounds the wait for the head only: a pause inside the
// body longer than it completes (the idle timeout bounds it), on the
// HTTP/1.x path and on HTTP2 ports. (TestLongPauseInsideABody is the same
// with the default limits and a 90 s pause.)
func TestPauseInsideABodyOutlastsTheResponseTimeout(t *testing.T) {
	const rt, idle, pause = 150 * time.Millisecond, 2 * time.Second, 600 * time.Millisecond
	tune := func(c *Config) { c.ResponseTimeout, c.IdleTimeout = rt, idle }
	t.Run("http1", func(t *testing.T) {
		u := newUpstream(t, pausingHandler(pause))
		e := scriptedEnv(t, &scriptedUpstream{port: u.port}, nil, tune)
		rc := e.dial()
		wantWholePollHTTP1(t, rc)
	})
	t.Run("h2c", func(t *testing.T) {
		e, _, _ := h2cEnv(t, pausingHandler(pause), tune)
		client, _ := h2cClient(t, e)
		wantWholePoll(t, client)
	})
}

// The real case: default limits (a one-minute response timeout), a 90 s
// pause in a long poll. It takes 90 s of wall time, so it runs only with
// EGRESSD_LONG_TESTS=1 (scripts/test.sh sets it).
func TestLongPauseInsideABody(t *testing.T) {
	if os.Getenv("EGRESSD_LONG_TESTS") == "" {
		t.Skip("a 90 s pause: set EGRESSD_LONG_TESTS=1")
	}
	t.Parallel()
	const pause = 90 * time.Second
	t.Run("http1", func(t *testing.T) {
		t.Parallel()
		u := newUpstream(t, pausingHandler(pause))
		e := scriptedEnv(t, &scriptedUpstream{port: u.port}, nil)
		rc := e.dial()
		rc.c.SetDeadline(time.Now().Add(pause + 30*time.Second))
		wantWholePollHTTP1(t, rc)
	})
	t.Run("h2c", func(t *testing.T) {
		t.Parallel()
		e, _, _ := h2cEnv(t, pausingHandler(pause))
		client, _ := h2cClient(t, e)
		client.Timeout = pause + 30*time.Second
		wantWholePoll(t, client)
	})
}

// A client that leaves while its long poll waits for the head (or inside
// the body) has its upstream connection closed within a second, and the
// access log says it left, not 200.
func TestAbandonedLongPollClosesTheUpstream(t *testing.T) {
	for _, headFirst := range []bool{false, true} {
		name := "waiting for the head"
		if headFirst {
			name = "inside the body"
		}
		t.Run(name, func(t *testing.T) {
			closed := make(chan time.Time, 1)
			u := newScriptedUpstream(t, nil, func(u *scriptedUpstream, i int, c net.Conn, br *bufio.Reader) {
				if _, err := u.readRequest(br); err != nil {
					return
				}
				if headFirst {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n.\r\n")
				}
				br.ReadByte() // a long poll: nothing until egressd closes
				closed <- time.Now()
			})
			e := scriptedEnv(t, u, nil)
			rc := e.dial()
			rc.send("GET /poll HTTP/1.1\r\nHost: a.allowed.test\r\n\r\n")
			if headFirst {
				resp, err := http.ReadResponse(rc.br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("head: %v", err)
				}
			} else {
				<-u.reqs
			}
			time.Sleep(50 * time.Millisecond)
			left := time.Now()
			rc.c.Close()
			select {
			case at := <-closed:
				if d := at.Sub(left); d > time.Second {
					t.Fatalf("upstream connection closed %v after the client left", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream connection still open 5 s after the client left")
			}
			waitFor(t, func() bool { return strings.Contains(e.logs.String(), "client went away") })
			if headFirst {
				mustContain(t, e.logs.String(), `"reason":"client went away during the response body"`)
			} else if strings.Contains(e.logs.String(), `"status":200`) {
				t.Fatalf("access log says 200 for an abandoned request: %s", e.logs.String())
			}
		})
	}
}
