package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ReloaderOptions configures a Reloader. The zero value is ready to use.
type ReloaderOptions struct {
	// Logger receives reloads, refused versions with each of their problems,
	// and warnings. nil: logs are discarded.
	Logger *slog.Logger
	// OnReload, if not nil, is called after each reload attempt that read a
	// new version of the files: with nil when the new rules are in force, or
	// with the *Error that kept the previous ones. cmd feeds metrics with it.
	// It runs on the goroutine that reloaded and must not block.
	OnReload func(err error)
	// Debounce is how long Watch waits after the last file event before it
	// reloads, so that a burst of writes is read once. 0: 100ms.
	Debounce time.Duration
	// Check, if not nil, vets every valid version before it is put in
	// force, the first one too: an error refuses the version as a problem
	// in the files would (at start, NewReloader fails with it). cmd checks
	// there that rules with useEgressProxy have an egress proxy.
	Check func(*Set) error
}

// Reloader holds the current rules and replaces them when their files
// change. Readers call Current, which is lock-free. A version with problems
// never replaces a valid one: it is logged, counted and reported to
// OnReload, and the previous rules stay in force. So is a version without
// any EgressRule while the rules in force have some, unless it holds a
// document of kind DenyAllEgress: an emptied ConfigMap or a file caught
// half-written would otherwise deny every request without anyone having
// asked for it. The first load may have no rules (there is nothing to
// keep, and denying everything is what no rules mean).
type Reloader struct {
	paths []string
	opts  ReloaderOptions
	log   *slog.Logger
	cur   atomic.Pointer[Set]

	mu         sync.Mutex // serializes reloads
	curSum     [32]byte   // digest of the files behind cur
	failedSum  [32]byte   // digest of the last refused version
	reloads    atomic.Uint64
	failures   atomic.Uint64
	lastFailed atomic.Bool
	reads      atomic.Uint64 // times reload read the files (tests)

	watching func() // tests: called once Watch watches every directory
}

// ReloadStats counts reload outcomes since NewReloader.
type ReloadStats struct {
	Reloads    uint64 // new versions put in force
	Failures   uint64 // new versions refused
	LastFailed bool   // the latest version read was refused
}

// NewReloader loads the rules at paths (see Load). An error here is meant to
// be fatal for the caller: there are no previous rules to keep.
func NewReloader(paths []string, opts ReloaderOptions) (*Reloader, error) {
	r := &Reloader{paths: paths, opts: opts, log: opts.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.opts.Debounce <= 0 {
		r.opts.Debounce = 100 * time.Millisecond
	}
	s, warnings, sum, err := load(paths)
	r.logWarnings(warnings)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	if opts.Check != nil {
		if err := opts.Check(s); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
	}
	r.cur.Store(s)
	r.curSum = sum
	r.log.Info("rules loaded", "rules", s.Len(), "files", len(s.Files()))
	return r, nil
}

// Current returns the rules in force. It never returns nil.
func (r *Reloader) Current() *Set { return r.cur.Load() }

// Stats returns the reload counters.
func (r *Reloader) Stats() ReloadStats {
	return ReloadStats{Reloads: r.reloads.Load(), Failures: r.failures.Load(), LastFailed: r.lastFailed.Load()}
}

// Reload reads the files now (on SIGHUP, say) and puts a valid version in
// force. It returns the problems of a refused version, which it also logs
// and counts even when it is the same version as last time.
func (r *Reloader) Reload() error { return r.reload(true) }

// reload loads and swaps. Without force, a version equal to the one in
// force or to the last refused one is ignored: file events often come in
// bursts that change nothing.
func (r *Reloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, warnings, sum, err := load(r.paths)
	r.reads.Add(1)
	if err == nil {
		err = r.vet(s)
	}
	if sum == r.curSum {
		// Back to the version in force (after a refused edit, say): the
		// latest version read is no longer a refused one, and that one
		// coming again is news again.
		r.lastFailed.Store(false)
		r.failedSum = [32]byte{}
	}
	if !force && (sum == r.curSum || err != nil && sum == r.failedSum) {
		return nil
	}
	if force && err == nil && sum == r.curSum {
		r.log.Info("rules unchanged", "rules", s.Len())
		return nil
	}
	r.logWarnings(warnings)
	if err != nil {
		r.failedSum = sum
		r.failures.Add(1)
		r.lastFailed.Store(true)
		r.logRefused(err)
	} else {
		r.cur.Store(s)
		r.curSum = sum
		r.reloads.Add(1)
		r.lastFailed.Store(false)
		r.log.Info("rules reloaded", "rules", s.Len(), "files", len(s.Files()))
	}
	if r.opts.OnReload != nil {
		r.opts.OnReload(err)
	}
	return err
}

// vet refuses a valid version that would empty the rules in force by
// accident, or that Check refuses.
func (r *Reloader) vet(s *Set) error {
	if n := r.cur.Load().Len(); s.Len() == 0 && n > 0 && !s.denyAll {
		return &Error{Problems: []Problem{{Message: fmt.Sprintf("no EgressRule in the files, while the %d rule(s) in force allow requests: "+
			"refused; to deny every request on purpose, add a document of kind: %s", n, DenyAllKind)}}}
	}
	if r.opts.Check != nil {
		return r.opts.Check(s)
	}
	return nil
}

func (r *Reloader) logRefused(err error) {
	var le *Error
	if !errors.As(err, &le) {
		r.log.Error("rules reload refused; the previous rules stay in force", "err", err)
		return
	}
	r.log.Error("rules reload refused; the previous rules stay in force", "problems", len(le.Problems))
	for _, p := range le.Problems {
		r.log.Error("rule problem", "problem", p.String())
	}
}

func (r *Reloader) logWarnings(ws []Warning) {
	for _, w := range ws {
		r.log.Warn("rule warning", "warning", w.String())
	}
}

// Watch reloads the rules whenever their files change, until ctx is done;
// it then returns nil. It watches each directory given, and the directory
// holding each file given, which catches editors that write a new file and
// rename it over the old one, and the way Kubernetes updates a mounted
// ConfigMap: new files in a hidden ..<timestamp> directory, then an atomic
// rename of the ..data symlink pointing to it. A file path that is a symlink
// also has the directory of its target watched. Only events that can change
// the rules count: for a file path, its own name, its symlink target and
// ..data beside it; for a directory path, its rule files (*.yaml, *.yml,
// *.json) and ..data. Anything else in those directories (a log file
// written beside the rules, say) is ignored. Events are debounced. An error
// is returned only when watching cannot start.
func (r *Reloader) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch rules: %w", err)
	}
	defer w.Close()
	t := r.watchTargets()
	for _, d := range t.dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch rules in %s: %w", d, err)
		}
	}
	if r.watching != nil {
		r.watching()
	}
	_ = r.reload(false) // catch changes made before the watches existed
	timer := time.NewTimer(r.opts.Debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op != fsnotify.Chmod && t.relevant(ev.Name) {
				timer.Reset(r.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching rule files", "err", err)
			timer.Reset(r.opts.Debounce) // events may have been lost
		case <-timer.C:
			t = r.watchTargets() // again: a directory or a symlink target may have been replaced
			for _, d := range t.dirs {
				_ = w.Add(d)
			}
			_ = r.reload(false) // logged, counted and reported by reload
		}
	}
}

// watchTargets says what to watch and which events matter.
type watchTargets struct {
	dirs     []string        // directories to watch
	files    map[string]bool // cleaned file names whose events matter
	ruleDirs map[string]bool // directories whose rule files all matter
}

// relevant reports whether an event for name can change the rules.
func (t *watchTargets) relevant(name string) bool {
	if abs, err := filepath.Abs(name); err == nil {
		name = abs
	}
	if t.files[name] {
		return true
	}
	return t.ruleDirs[filepath.Dir(name)] && (isRuleFile(name) || filepath.Base(name) == "..data")
}

// watchTargets lists the directories to watch: each directory path, the
// parent of each file path and, when a file path is a symlink, the parent
// of the file it resolves to (an edit there changes the rules too). It is
// re-evaluated after each reload, since a ..data swap moves the target.
func (r *Reloader) watchTargets() *watchTargets {
	t := &watchTargets{files: make(map[string]bool), ruleDirs: make(map[string]bool)}
	add := func(d string) {
		if !slices.Contains(t.dirs, d) {
			t.dirs = append(t.dirs, d)
		}
	}
	for _, p := range r.paths {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs // event names then match whichever spelling a directory was added under
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			add(p)
			t.ruleDirs[p] = true
			t.files[p] = true // the directory itself removed or replaced
			continue
		}
		add(filepath.Dir(p))
		t.files[p] = true
		t.files[filepath.Join(filepath.Dir(p), "..data")] = true
		if target, err := filepath.EvalSymlinks(p); err == nil {
			add(filepath.Dir(target))
			t.files[target] = true
		}
	}
	return t
}
