package http1

import (
	"bufio"
	"net"

	"github.com/egressd/egressd/l7/internal/body"
	"github.com/egressd/egressd/l7/internal/dialer"
	"github.com/egressd/egressd/l7/internal/pool"
	"github.com/egressd/egressd/l7/internal/probe"
)

// upConn is a pooled upstream HTTP/1.1 connection. Its pool.Node holds its
// key, whether it was reused, and its places in the pool while idle.
type upConn struct {
	pool.Node[*upConn]
	NC       net.Conn
	BR       *bufio.Reader
	BW       *bufio.Writer
	Via      *dialer.EgressProxy // plain HTTP to the egress proxy (absolute form); nil: to the upstream
	RDL, WDL body.Deadline       // NC's read and write deadlines (l7/internal/body/deadline.go)
	peeker   *probe.Socket       // probe.go: the reuse check; nil until the first reuse
	hw       *headWriter         // headwrite.go: under bw for plain TCP; nil otherwise
}

// PoolNode and Close make an upConn a pool.Conn.
func (uc *upConn) PoolNode() *pool.Node[*upConn] { return &uc.Node }
func (uc *upConn) Close() error                  { return uc.NC.Close() }
