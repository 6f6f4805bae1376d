package l7

// serveTLSPassthrough serves a connection that starts with a TLS handshake:
// it reads the SNI from the ClientHello (still unread in c.br), decides it and
// splices the bytes to the upstream. STUB: helper H replaces this file.
func (p *Proxy) serveTLSPassthrough(c *clientConn) {
	p.log.Warn("tls passthrough not implemented yet: closing", "client", c.client, "orig", c.orig)
}
