package redirect

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"

	"github.com/egressd/egressd/internal/mounts"
)

// Close releases the agent's file descriptors. The pins stay, and with
// them the attached programs and their maps: connects from the cgroups are
// still redirected (and refused while no proxy listens). Use Uninstall to
// detach.
// Close may be called more than once.
func (r *Redirector) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, a := range r.links {
		errs = append(errs, a.l.Close())
	}
	r.links = nil
	errs = append(errs, r.objs.Close(), r.guard.Close())
	return errors.Join(errs...)
}

// Uninstall detaches every program pinned under pinDir ("" for the
// default, as in Options.PinDir) and removes the pins and the directory.
// Nothing pinned is not an error.
func Uninstall(pinDir string) error {
	dir, err := uninstallDir(pinDir)
	if err != nil || dir == "" {
		return err
	}
	links := filepath.Join(dir, "links")
	if err := detachUnwanted(links, nil, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	return nil
}

// uninstallDir resolves pinDir like Attach does, but without mounting
// bpffs: "" when there is nothing to uninstall.
func uninstallDir(dir string) (string, error) {
	if dir == "" {
		fs, err := mounts.Find("bpf")
		if errors.Is(err, mounts.ErrNotMounted) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("uninstall: %w", err)
		}
		dir = filepath.Join(fs, "egressd")
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return dir, nil
}

// detachUnwanted detaches and unpins every link pinned in dir whose name is
// not in wanted.
func detachUnwanted(dir string, wanted map[string]bool, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if wanted[e.Name()] {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := detachPinned(path); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", path, err))
			continue
		}
		log.Info("detached", "pin", path)
	}
	return errors.Join(errs...)
}

func detachPinned(path string) error {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	// Detach even if a running agent still holds the link open; kernels
	// without BPF_LINK_DETACH (before 5.9) detach on the last close.
	if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
		return err
	}
	return l.Unpin()
}
