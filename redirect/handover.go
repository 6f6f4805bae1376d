package redirect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// What an agent hand-over (cmd/egressd, internal/handover) needs from the
// pins: a token that proves a successor can take them over, and its check.
// The original-destination map is the token because it is what the two
// agents must share for either one's Lookup to find the connections it
// accepts.

// origMapPin is the pin name of the original-destination map (conn_origs
// in bpf/egressd.h, pinned by name).
const origMapPin = "conn_origs"

// HandoverToken opens the original-destination map pinned under dir
// (resolved as Attach does, without mounting bpffs): a descriptor only a
// process able to take the pins over can get. The serving agent checks it
// with CheckHandoverToken.
func HandoverToken(dir string) (*os.File, error) {
	d, err := pinDir(dir, false)
	if err != nil {
		return nil, fmt.Errorf("redirect: %w", err)
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(d, "maps", origMapPin), nil)
	if err != nil {
		return nil, fmt.Errorf("redirect: hand-over token: %w", err)
	}
	defer m.Close()
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("redirect: hand-over token: %w", err)
	}
	return os.NewFile(uintptr(fd), origMapPin), nil
}

// CheckHandoverToken returns nil when token is a descriptor of r's own
// original-destination map: the successor opened the same pins.
func (r *Redirector) CheckHandoverToken(token *os.File) error {
	fd, err := unix.FcntlInt(token.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("redirect: hand-over token: %w", err)
	}
	m, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("redirect: hand-over token: %w", err)
	}
	defer m.Close()
	got, err := idOf(m)
	if err != nil {
		return err
	}
	want, err := idOf(r.objs.ConnOrigs)
	if err != nil {
		return err
	}
	if got != want {
		return errors.New("redirect: hand-over token: not this agent's original-destination map (another pin directory?)")
	}
	return nil
}

func idOf(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("redirect: map info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("redirect: map info: no ID (kernel older than 4.13)")
	}
	return id, nil
}
