package sni

import (
	"net"
	"time"
)

// TLS alert descriptions (RFC 8446 6) sent in place of a ServerHello when
// the proxy will not splice a connection, so that the app's error says why
// ("tls: access denied") instead of "EOF".
const (
	AlertAccessDenied     = 49
	AlertInternalError    = 80
	AlertUnrecognizedName = 112
)

// SendAlert writes one fatal alert record (plaintext: no handshake has
// happened), best effort: the connection is closed next anyway.
func SendAlert(nc net.Conn, desc byte) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write([]byte{21, 3, 3, 0, 2, 2, desc})
}
