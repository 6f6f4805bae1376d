package h2c

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
)

// h2MaxFrameSizeToUpstream is the largest frame the proxy's HTTP/2
// transport believes an upstream accepts. x/net sizes the buffer it copies
// a request body through by the peer's SETTINGS_MAX_FRAME_SIZE, up to 512
// KiB per stream (Go servers announce 1 MiB): 1,000 streams with bodies
// mapped 500 MiB, which the runtime counts against GOMEMLIMIT (and then
// collects garbage without pause) although little of it is touched.
// Frames of 16 KiB (HTTP/2's default) cost nothing measurable in bulk.
const h2MaxFrameSizeToUpstream = 16 << 10

// settingsClamp is an upstream HTTP/2 connection whose first frame, the
// server's SETTINGS (RFC 9113 3.4), is read whole and has its
// SETTINGS_MAX_FRAME_SIZE lowered to h2MaxFrameSizeToUpstream before the
// transport sees it; everything after passes untouched. A later SETTINGS
// frame raising it again (servers do not) is not clamped: it only costs
// memory the runtime counts, not memory the kernel charges.
type settingsClamp struct {
	net.Conn
	first   bool   // the first frame is still to be read
	pending []byte // the clamped first frame, not yet returned
}

// clampUpstreamSettings wraps nc (plain TCP or *tls.Conn, whose
// ConnectionState the transport still reaches).
func clampUpstreamSettings(nc net.Conn) net.Conn {
	c := &settingsClamp{Conn: nc, first: true}
	if tc, ok := nc.(*tls.Conn); ok {
		return &tlsSettingsClamp{settingsClamp: c, tc: tc}
	}
	return c
}

type tlsSettingsClamp struct {
	*settingsClamp
	tc *tls.Conn
}

func (c *tlsSettingsClamp) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// maxSettingsPayload bounds the first frame read whole (a SETTINGS frame
// lists a handful of 6-byte entries).
const maxSettingsPayload = 6 * 64

func (c *settingsClamp) Read(p []byte) (int, error) {
	if c.first {
		c.first = false
		var hdr [9]byte
		if _, err := io.ReadFull(c.Conn, hdr[:]); err != nil {
			return 0, err
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		c.pending = hdr[:]
		if hdr[3] == 0x4 && hdr[4]&0x1 == 0 && n%6 == 0 && n <= maxSettingsPayload { // SETTINGS, not ACK
			frame := make([]byte, 9+n)
			copy(frame, hdr[:])
			if _, err := io.ReadFull(c.Conn, frame[9:]); err != nil {
				return 0, err
			}
			for e := frame[9:]; len(e) >= 6; e = e[6:] {
				if binary.BigEndian.Uint16(e) == 0x5 && binary.BigEndian.Uint32(e[2:]) > h2MaxFrameSizeToUpstream {
					binary.BigEndian.PutUint32(e[2:], h2MaxFrameSizeToUpstream)
				}
			}
			c.pending = frame
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
