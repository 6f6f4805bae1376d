package l7

import (
	"bytes"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Streams opens an h2c connection from src and n POST streams on it whose
// bodies never come (no END_STREAM), as a flooding pod would; refused
// counts the streams answered 503, done those answered at all.
func h2Streams(t *testing.T, e *env, src, method string, n int, refused, done *atomic.Int32) net.Conn {
	t.Helper()
	c := e.dialFrom(src).c
	c.SetDeadline(time.Time{})
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			// Only reads here (a Framer's writes are not concurrent-safe):
			// the server's SETTINGS go unacknowledged, which it tolerates.
			if f, ok := f.(*http2.MetaHeadersFrame); ok {
				if f.PseudoValue("status") == "503" {
					refused.Add(1)
				}
				done.Add(1)
			}
		}
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range n {
		hb.Reset()
		for _, kv := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "api.allowed.test"}, {":path", "/flood"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(),
			EndHeaders: true, EndStream: method == "GET"}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestH2CStreamsPerClient: one client opens 8 h2c connections with 250
// unfinished uploads each (2,000 streams, within the connection limits;
// unbounded they held ~35 KiB of egressd's heap each, so ~60 such
// connections took a 512 MiB agent past its limit). Asserted at the
// upstream: exactly MaxStreamsPerClient of them reached it, the others got
// 503 and were counted; another client's request on its own connection
// still goes through, and once the flood ends the flooder is served again.
func TestH2CStreamsPerClient(t *testing.T) {
	var arrived atomic.Int32
	e, _, _ := h2cEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.WriteHeader(200)
			return
		}
		arrived.Add(1)
		<-r.Context().Done()
	})
	const conns, perConn = 8, 250
	var refused, done atomic.Int32
	var flood []net.Conn
	for range conns {
		flood = append(flood, h2Streams(t, e, "127.0.0.5", "POST", perConn, &refused, &done))
	}
	deadline := time.Now().Add(30 * time.Second)
	until := func(cond func() bool) {
		for !cond() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	until(func() bool { return arrived.Load()+refused.Load() >= conns*perConn })
	if n := arrived.Load(); n != DefaultMaxStreamsPerClient {
		t.Errorf("the upstream received %d of the flooder's streams, want %d", n, DefaultMaxStreamsPerClient)
	}
	if n := refused.Load(); n != conns*perConn-DefaultMaxStreamsPerClient {
		t.Errorf("%d streams answered 503, want %d", n, conns*perConn-DefaultMaxStreamsPerClient)
	}
	if n := e.counter("egressd_streams_refused_total", "reason", "max_streams_per_client"); n != conns*perConn-DefaultMaxStreamsPerClient {
		t.Errorf("egressd_streams_refused_total{max_streams_per_client} = %v", n)
	}

	// Another client, meanwhile: served.
	var otherRefused, otherDone atomic.Int32
	h2Streams(t, e, "127.0.0.6", "GET", 1, &otherRefused, &otherDone)
	until(func() bool { return otherDone.Load() > 0 })
	if otherDone.Load() != 1 || otherRefused.Load() != 0 {
		t.Errorf("the other client: %d answers, %d refused; want its request served", otherDone.Load(), otherRefused.Load())
	}

	// The flood over, its streams are released: the flooder is served again.
	for _, c := range flood {
		c.Close()
	}
	until(func() bool {
		return e.p.limits.StreamClients() == 0
	})
	var againRefused, againDone atomic.Int32
	h2Streams(t, e, "127.0.0.5", "GET", 1, &againRefused, &againDone)
	until(func() bool { return againDone.Load() > 0 })
	if againDone.Load() != 1 || againRefused.Load() != 0 {
		t.Errorf("the flooder after the flood: %d answers, %d refused; want it served", againDone.Load(), againRefused.Load())
	}
}
