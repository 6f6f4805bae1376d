package http1

import (
	"bufio"
	"strings"
	"testing"
)

func TestHeadBuffered(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n", true}, // pipelined
		{"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody", true},
		{"GET / HTTP/1.1\r\nHost: a\r\n", false},
		{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false}, // readHead skips the empty line: not counted
		{"\r\n\r\n", false},
	} {
		br := bufio.NewReader(strings.NewReader(tc.in))
		br.Peek(len(tc.in))
		if got := headBuffered(br); got != tc.want {
			t.Errorf("headBuffered(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
