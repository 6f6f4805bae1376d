package client

import "bufio"

// Protocol is what a connection's first bytes say it speaks.
type Protocol int

const (
	None  Protocol = iota // nothing came
	HTTP1                 // anything else: the HTTP/1.x reader reports what is wrong with it
	H2C                   // the HTTP/2 prior-knowledge preface
	TLS                   // a TLS handshake record
)

// h2Preface is the HTTP/2 client connection preface (prior knowledge, h2c).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Sniff reads br's first bytes, waiting for them under the connection's
// read deadline, and classifies them without consuming any.
func Sniff(br *bufio.Reader) Protocol {
	b, err := br.Peek(1)
	if err != nil {
		return None
	}
	switch b[0] {
	case 0x16:
		return TLS
	case 'P':
	default:
		return HTTP1
	}
	// Compare byte by byte as they arrive: a short "PUT" request must not
	// wait for 24 bytes that never come.
	for n := 1; n <= len(h2Preface); n++ {
		b, err := br.Peek(n)
		if err != nil {
			return HTTP1 // let the HTTP/1 reader report what is there
		}
		if string(b) != h2Preface[:n] {
			return HTTP1
		}
	}
	return H2C
}
