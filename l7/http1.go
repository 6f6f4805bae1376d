package l7

// serveHTTP1 serves HTTP/1.x requests on c until the connection ends.
func (p *Proxy) serveHTTP1(c *clientConn) {
	p.log.Warn("http/1 not implemented yet: closing", "client", c.client, "orig", c.orig)
}
