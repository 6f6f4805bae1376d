package zerocopy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/tcptest"
)

// Bytes written into one connection come out of the other whole and in
// order through the pipe; a source that stalls past its read deadline
// fails the Fill with the deadline error and loses nothing: after a new
// deadline the rest still arrives.
func TestPipeMovesWholeAndStallsCleanly(t *testing.T) {
	inW, inR := tcptest.Pair(t)   // the sender writes inW; the pipe reads inR
	outW, outR := tcptest.Pair(t) // the pipe writes outW; the receiver reads outR
	src, dst, ok := Sockets(inR, outW)
	if !ok {
		t.Fatal("Sockets refused two TCP connections")
	}
	if _, _, ok := Sockets(inR, struct{ net.Conn }{outW}); ok {
		t.Fatal("Sockets accepted a wrapped connection")
	}
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	data := make([]byte, 3<<20+7)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(outR)
		got <- b
	}()
	move := func(want int) {
		t.Helper()
		for moved := 0; moved < want; {
			inR.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := p.Fill(src, p.Size())
			if err != nil || n == 0 {
				t.Fatalf("fill after %d bytes: %d, %v", moved, n, err)
			}
			w, err := p.Drain(dst)
			if err != nil || w != n || p.Buffered() != 0 {
				t.Fatalf("drain: %d of %d, %v, %d left", w, n, err, p.Buffered())
			}
			moved += w
		}
	}
	go inW.Write(data[:1<<20])
	move(1 << 20)

	inR.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := p.Fill(src, p.Size()); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled fill: %d, %v; want 0 and the deadline error", n, err)
	}
	go func() {
		inW.Write(data[1<<20:])
		inW.CloseWrite()
	}()
	move(len(data) - 1<<20)
	inR.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.Fill(src, p.Size()); n != 0 || err != nil {
		t.Fatalf("at the end: %d, %v; want 0, nil", n, err)
	}
	outW.CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("received %d bytes, different from the %d sent", len(b), len(data))
	}
}
