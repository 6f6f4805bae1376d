package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/egressd/egressd/l7/internal/addrpolicy"
	"github.com/egressd/egressd/l7/internal/sni"
)

// serveTLSPassthrough serves a connection that starts with a TLS handshake:
// the app does its own TLS. The SNI of its ClientHello (still unread in c.br)
// and the original port are decided against the rules; an allowed connection
// is spliced byte for byte to the upstream, anything else (no SNI, no rule,
// not a ClientHello) is closed. Nothing is decrypted. One access-log entry
// covers the whole connection.
func (p *Proxy) serveTLSPassthrough(c *clientConn) {
	e := accessEntry{
		start:    time.Now(),
		client:   c.client,
		orig:     c.orig,
		port:     c.orig.Port(),
		protocol: protoNameTLSPass,
		decision: decisionInvalid,
		scope:    &c.scope,
	}
	defer p.finish(&e)
	c.nc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	hello, br, err := sni.Peek(c.br)
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		e.reason = err.Error()
		return
	}
	e.host = hello.ServerName
	if hello.ServerName == "" {
		e.decision = decisionDeny
		e.reason = "tls client hello without server name (SNI)"
		sendAlert(c.nc, alertUnrecognizedName)
		return
	}
	m, ok := p.decide(&e, hello.ServerName, e.port)
	if !ok {
		e.decision = decisionDeny
		e.reason = "no egress rule allows the host and port"
		sendAlert(c.nc, alertAccessDenied)
		return
	}
	e.decision, e.rule, e.upstream = decisionAllow, m.Rule.Name, "tls"
	up, err := p.dialUpstream(context.Background(), m, hello.ServerName, c.orig)
	if err != nil {
		var refused *addrpolicy.RefusedError
		if _, e.reason = p.upstreamError(err); errors.As(err, &refused) {
			sendAlert(c.nc, alertAccessDenied)
		} else {
			sendAlert(c.nc, alertInternalError)
		}
		return
	}
	defer up.Close()
	end := p.beginSplice(c, &splice{protocol: e.protocol, hosts: []string{hello.ServerName}, port: e.port, rule: m.Rule.Name, client: c.nc, up: up})
	e.bytesIn, e.bytesOut, err = spliceConns(c.nc, br, up, p.cfg.IdleTimeout)
	if cut := end(); cut != "" {
		e.reason = cut
	} else if err != nil && !isPeerReset(err) {
		e.reason = "spliced connection failed: " + err.Error()
	}
}

// isPeerReset reports whether err is a peer ending the connection with a
// reset (or a write after it did): how many TLS clients close once they
// have what they wanted. It is a normal end of a spliced connection, not a
// failure to log (issue 22 item 9).
func isPeerReset(err error) bool {
	return errors.Is(err, errConnReset) || errors.Is(err, errBrokenPipe)
}

// TLS alert descriptions (RFC 8446 6) egressd sends in place of a
// ServerHello when it will not splice a passthrough connection, so that the
// app's error says why ("tls: access denied") instead of "EOF".
const (
	alertAccessDenied     = 49
	alertInternalError    = 80
	alertUnrecognizedName = 112
)

// sendAlert writes one fatal alert record (plaintext: no handshake has
// happened), best effort: the connection is closed next anyway.
func sendAlert(nc net.Conn, desc byte) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte{21, 3, 3, 0, 2, 2, desc})
}

// spliceConns copies client→upstream (starting with what is buffered in clientR)
// and upstream→client until both directions end. A direction that reaches
// EOF half-closes its destination, so the other may go on, but no longer
// than grace without a byte: a peer that stays half-open and silent does not
// hold the connection until Shutdown. One that fails closes both
// connections, so the other cannot hang. It returns the bytes sent each way
// and the first failure.
func spliceConns(client net.Conn, clientR io.Reader, up net.Conn, grace time.Duration) (in, out int64, err error) {
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
