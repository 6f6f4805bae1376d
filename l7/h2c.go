package l7

// serveH2C serves an HTTP/2 prior-knowledge (h2c) connection, including gRPC.
// c.br holds the unread client preface. STUB: helper H replaces this file.
func (p *Proxy) serveH2C(c *clientConn) {
	p.log.Warn("h2c not implemented yet: closing", "client", c.client, "orig", c.orig)
}
