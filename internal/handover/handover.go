// Package handover passes a running agent's listening sockets to the agent
// that replaces it, so that an upgrade refuses no connection: the kernel
// socket, with the connections queued in its accept backlog, never closes;
// only the process calling accept on it changes.
//
// Why a passed socket and not SO_REUSEPORT: with two sockets in a reuseport
// group the kernel spreads new connections over both, and the connections
// queued on the old process's socket when it closes are reset (unless the
// host enables net.ipv4.tcp_migrate_req or attaches an sk_reuseport
// program that migrates them). Any process of the same user could also
// join the group. One socket handed over (as Envoy's hot restart, HAProxy's
// expose-fd and systemd socket activation do) has no queue to lose, needs
// no sysctl or extra BPF program, and is given only to a successor that
// proves it can open the agent's pinned maps.
//
// The protocol, over a SOCK_SEQPACKET Unix socket in the abstract namespace
// (Name: one per proxy port and network namespace, gone with its process):
//
//  1. The successor connects and sends hello with a token descriptor
//     (for egressd: the pinned original-destination map).
//  2. The serving agent checks the token (Offer.Verify) and answers offer
//     with its listening sockets; it keeps accepting on them.
//  3. The successor takes over (programs, pins), starts serving on the
//     same sockets and sends ready. Until then nothing of the serving
//     agent changed: if the successor fails, it closes the connection and
//     the serving agent carries on (and waits for the next successor).
//  4. The serving agent stops listening for successors, answers done and
//     reports HandedOver: its caller stops accepting and drains. The
//     successor then listens for its own successor under the same Name.
//
// Files: handover.go (Name, messages), serve.go (the serving agent's side),
// acquire.go (the successor's side).
package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Name is the abstract Unix socket name of the agent serving proxy port in
// this network namespace.
func Name(port uint16) string { return fmt.Sprintf("@egressd-handover-%d", port) }

// Message types.
const (
	msgHello   = "hello"
	msgOffer   = "offer"
	msgRefused = "refused"
	msgReady   = "ready"
	msgDone    = "done"
)

// version of the protocol; a successor speaking another is refused.
const version = 1

type message struct {
	Type    string `json:"type"`
	Version int    `json:"version,omitempty"`
	// Admin is the serving agent's admin address (offer), so the successor
	// uses the admin socket only for the same address.
	Admin string `json:"admin,omitempty"`
	// HasAdmin: the offer's second descriptor is the admin socket.
	HasAdmin bool   `json:"has_admin,omitempty"`
	Error    string `json:"error,omitempty"` // refused
}

// maxFiles is the most descriptors a message carries.
const maxFiles = 2

// send writes m with files attached (SCM_RIGHTS).
func send(c *net.UnixConn, m message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("handover: send %s: %w", m.Type, err)
	}
	return nil
}

// errClosed: the peer closed the connection.
var errClosed = errors.New("handover: peer closed the connection")

// receive reads one message and the descriptors it carries.
func receive(c *net.UnixConn) (message, []*os.File, error) {
	b := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(maxFiles*4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
		return message{}, nil, errClosed
	}
	if err != nil {
		return message{}, nil, fmt.Errorf("handover: receive: %w", err)
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		return message{}, nil, err
	}
	if n == 0 {
		closeAll(files)
		return message{}, nil, errClosed
	}
	var m message
	if err := json.Unmarshal(b[:n], &m); err != nil {
		closeAll(files)
		return message{}, nil, fmt.Errorf("handover: receive: %w", err)
	}
	return m, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handover: control message: %w", err)
	}
	var files []*os.File
	for _, cm := range cmsgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "handover"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
