// Package bridge splices: it joins two connections byte for byte until both
// directions end: TLS passthrough, CONNECT tunnels and 101 upgrades in l7.
// A direction that reaches EOF half-closes its destination, so the other
// may go on, but no longer than a grace without a byte; one that fails
// closes both.
//
// Why a package of its own: the half-close and grace rules are the same
// for every spliced protocol and know nothing of what the bytes are.
//
// Files: bridge.go (Conns, IsPeerReset).
package bridge

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// IsPeerReset reports whether err is a peer ending the connection with a
// reset (or a write after it did): how many TLS clients close once they
// have what they wanted. It is a normal end of a spliced connection, not a
// failure to log (issue 22 item 9).
func IsPeerReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Conns copies client→upstream (starting with what is buffered in clientR)
// and upstream→client until both directions end. A direction that reaches
// EOF half-closes its destination, so the other may go on, but no longer
// than grace without a byte: a peer that stays half-open and silent does not
// hold the connection until Shutdown. One that fails closes both
// connections, so the other cannot hang. It returns the bytes sent each way
// and the first failure.
func Conns(client net.Conn, clientR io.Reader, up net.Conn, grace time.Duration) (in, out int64, err error) {
	inErr := make(chan error, 1)
	go func() {
		var err error
		in, err = copyHalf(up, clientR, client, grace)
		inErr <- err
	}()
	out, outErr := copyHalf(client, up, up, grace)
	// A direction that found its connection closed was stopped by the
	// other's failure (the one to report) or by Shutdown.
	for _, err := range [...]error{<-inErr, outErr} {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return in, out, err
		}
	}
	return in, out, nil
}

// copyHalf copies src (read from srcConn) to dst, then ends the direction
// (endDirection). A clean end starts the other direction's grace: a read
// deadline on dst, which is the other direction's source. A direction in its
// grace that times out having moved bytes since the last deadline gets
// another one; one that moved none is cut.
func copyHalf(dst net.Conn, src io.Reader, srcConn net.Conn, grace time.Duration) (int64, error) {
	var n int64
	for {
		k, err := io.Copy(dst, src)
		n += k
		if k > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			srcConn.SetReadDeadline(time.Now().Add(grace))
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("idle for %v after the other direction ended: %w", grace, err)
		}
		endDirection(dst, err, srcConn)
		if err == nil {
			dst.SetReadDeadline(time.Now().Add(grace))
		}
		return n, err
	}
}

// endDirection half-closes dst after a clean EOF, or closes both ends
// after a failure.
func endDirection(dst net.Conn, err error, src net.Conn) {
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}
