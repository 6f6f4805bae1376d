package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// configMap lays out a directory the way the kubelet updates a mounted
// ConfigMap: the files in a hidden ..<timestamp> directory, a ..data symlink
// to it, and a visible symlink per file into ..data. publish swaps ..data
// atomically to a new version, then removes the old one.
type configMap struct {
	t   *testing.T
	dir string
	n   int
	cur string
}

func newConfigMap(t *testing.T) *configMap {
	return &configMap{t: t, dir: t.TempDir()}
}

func (c *configMap) publish(files map[string]string) {
	t := c.t
	t.Helper()
	c.n++
	version := fmt.Sprintf("..2024_06_01_12_00_%02d.%09d", c.n, c.n)
	if err := os.Mkdir(filepath.Join(c.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		writeFile(t, filepath.Join(c.dir, version), name, content)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(c.dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if c.cur != "" {
		if err := os.RemoveAll(filepath.Join(c.dir, c.cur)); err != nil {
			t.Fatal(err)
		}
	}
	c.cur = version
}

func hostRule(host string) string {
	return fmt.Sprintf("kind: EgressRule\nmetadata: {name: %s}\nspec:\n  destination: {service: %s}\n  ports: [{port: 80, protocol: HTTP}]\n", host, host)
}

const invalidRule = "kind: EgressRule\nspec:\n  destination: {service: a..test}\n  ports: [{port: 80, protocol: HTTP}]\n"

func TestLoadConfigMapDirReadsEachFileOnce(t *testing.T) {
	cm := newConfigMap(t)
	cm.publish(map[string]string{"a.yaml": hostRule("a.test"), "b.json": `{"kind": "EgressRule", "spec": {"destination": {"service": "b.test"}, "ports": [{"port": 80, "protocol": "HTTP"}]}}`})
	writeFile(t, cm.dir, ".a.yaml.swp", "not yaml: [")
	writeFile(t, cm.dir, "README.md", "not yaml: [")
	s, warns, err := Load(cm.dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(cm.dir, "a.yaml"), filepath.Join(cm.dir, "b.json")}
	if fmt.Sprint(s.Files()) != fmt.Sprint(want) || s.Len() != 2 || len(warns) != 0 {
		t.Fatalf("Files = %v, Len = %d, warnings %v; want %v, 2, none", s.Files(), s.Len(), warns, want)
	}
}

// reloadEvents collects OnReload calls.
type reloadEvents chan error

func (ev reloadEvents) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-ev:
		return err
	case <-time.After(20 * time.Second): // a bound against hanging, not a speed assertion
		t.Fatal("no reload happened")
		return nil
	}
}

func allows(s *Set, host string) bool {
	_, ok := s.Match(host, 80)
	return ok
}

func TestReloaderWatchConfigMap(t *testing.T) {
	cm := newConfigMap(t)
	cm.publish(map[string]string{"rules.yaml": hostRule("v1.test")})
	events := make(reloadEvents, 10)
	r, err := NewReloader([]string{cm.dir}, ReloaderOptions{OnReload: func(err error) { events <- err }, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	r.watching = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() { watchDone <- r.Watch(ctx) }()
	<-ready

	// Readers run throughout: every set they see is a complete valid version.
	var wg sync.WaitGroup
	readErr := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				s := r.Current()
				if s == nil || s.Len() != 1 || allows(s, "v1.test") == allows(s, "v3.test") {
					readErr <- fmt.Sprintf("reader saw an inconsistent set: %v", s)
					return
				}
			}
		}()
	}

	cm.publish(map[string]string{"rules.yaml": invalidRule})
	var le *Error
	if err := events.next(t); !errors.As(err, &le) {
		t.Fatalf("reload of a bad version: err = %v, want *Error", err)
	}
	if !allows(r.Current(), "v1.test") {
		t.Fatal("a bad version replaced the good one")
	}
	if st := r.Stats(); st.Failures != 1 || st.Reloads != 0 || !st.LastFailed {
		t.Errorf("Stats = %+v after a bad version", st)
	}

	cm.publish(map[string]string{"rules.yaml": hostRule("v3.test")})
	if err := events.next(t); err != nil {
		t.Fatalf("reload of a good version: %v", err)
	}
	if s := r.Current(); !allows(s, "v3.test") || allows(s, "v1.test") {
		t.Fatal("the good version is not in force")
	}
	if st := r.Stats(); st.Failures != 1 || st.Reloads != 1 || st.LastFailed {
		t.Errorf("Stats = %+v after a good version", st)
	}

	if err := r.Reload(); err != nil { // SIGHUP with nothing changed
		t.Errorf("Reload unchanged: %v", err)
	}
	cancel()
	wg.Wait()
	if err := <-watchDone; err != nil {
		t.Errorf("Watch returned %v", err)
	}
	select {
	case msg := <-readErr:
		t.Error(msg)
	default:
	}
	select {
	case err := <-events:
		t.Errorf("unexpected reload: %v", err)
	default:
	}
}

// TestReloaderWatchFileRenameWrite watches a single file that an editor
// replaces by writing a temporary file and renaming it over the old one.
func TestReloaderWatchFileRenameWrite(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "rules.yaml", hostRule("v1.test"))
	events := make(reloadEvents, 10)
	r, err := NewReloader([]string{path}, ReloaderOptions{OnReload: func(err error) { events <- err }, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, r)

	tmp := writeFile(t, dir, ".rules.yaml.tmp", hostRule("v2.test"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if err := events.next(t); err != nil {
		t.Fatal(err)
	}
	if !allows(r.Current(), "v2.test") {
		t.Fatal("the renamed-over version is not in force")
	}
}

// startWatch runs r.Watch until the test ends and returns once it watches.
func startWatch(t *testing.T, r *Reloader) {
	t.Helper()
	ready := make(chan struct{})
	r.watching = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned %v before watching", err)
	}
}

// TestReloaderWatchSymlinkTarget watches a file path that is a symlink to a
// file elsewhere, which is then edited in place.
func TestReloaderWatchSymlinkTarget(t *testing.T) {
	real := writeFile(t, t.TempDir(), "real.yaml", hostRule("v1.test"))
	link := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	events := make(reloadEvents, 10)
	r, err := NewReloader([]string{link}, ReloaderOptions{OnReload: func(err error) { events <- err }, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, r)
	if err := os.WriteFile(real, []byte(hostRule("v2.test")), 0o644); err != nil {
		t.Fatal(err)
	}
	for !allows(r.Current(), "v2.test") { // an in-place write may be seen half done first
		events.next(t)
	}
}

func TestReloaderReload(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "rules.yaml", hostRule("v1.test"))
	var calls []error
	r, err := NewReloader([]string{path}, ReloaderOptions{OnReload: func(err error) { calls = append(calls, err) }})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "rules.yaml", invalidRule)
	for range 2 { // an explicit reload reports a bad version every time
		if err := r.Reload(); err == nil {
			t.Fatal("Reload of a bad version returned nil")
		}
	}
	if !allows(r.Current(), "v1.test") || len(calls) != 2 || r.Stats().Failures != 2 {
		t.Fatalf("after bad reloads: calls %v, stats %+v", calls, r.Stats())
	}
	writeFile(t, dir, "rules.yaml", hostRule("v2.test"))
	if err := r.Reload(); err != nil || !allows(r.Current(), "v2.test") {
		t.Fatalf("Reload of a good version: %v", err)
	}
}

func TestNewReloaderFailsOnBadRules(t *testing.T) {
	path := writeFile(t, t.TempDir(), "rules.yaml", invalidRule)
	_, err := NewReloader([]string{path}, ReloaderOptions{})
	var le *Error
	if !errors.As(err, &le) || len(le.Problems) != 1 {
		t.Fatalf("NewReloader error = %v, want one problem", err)
	}
}

// TestReloaderWatchIgnoresUnrelatedFiles writes other files beside the
// rules many times (egressd's own log beside its rules file, an editor's
// swap file in a rules directory): the rules are not read again. A change
// to the rules is then read once.
func TestReloaderWatchIgnoresUnrelatedFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		byDir  bool   // watch the directory rather than the file
		noise  string // the unrelated file written
		rename bool   // change the rules by rename (else in place)
	}{
		{name: "file", noise: "egressd.log", rename: true},
		{name: "dir", byDir: true, noise: ".rules.yaml.swp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "rules.yaml", hostRule("v1.test"))
			watched := path
			if tc.byDir {
				watched = dir
			}
			events := make(reloadEvents, 10)
			debounce := 20 * time.Millisecond
			r, err := NewReloader([]string{watched}, ReloaderOptions{OnReload: func(err error) { events <- err }, Debounce: debounce})
			if err != nil {
				t.Fatal(err)
			}
			startWatch(t, r)
			readsBefore := r.reads.Load() // Watch's own read once watching

			f, err := os.OpenFile(filepath.Join(dir, tc.noise), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for range 5 { // bursts spaced wider than the debounce, each a reload before the fix
				for range 200 {
					if _, err := f.WriteString("level=INFO msg=request\n"); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(3 * debounce)
			}
			writeFile(t, dir, "notes.txt", "x") // a new non-rule file too

			if tc.rename {
				tmp := writeFile(t, dir, ".rules.yaml.tmp", hostRule("v2.test"))
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, dir, "rules.yaml", hostRule("v2.test"))
			}
			if err := events.next(t); err != nil { // events arrive in order: the noise was seen first
				t.Fatal(err)
			}
			for !allows(r.Current(), "v2.test") { // an in-place write may be seen half done first
				events.next(t)
			}
			st := r.Stats()
			if reads := r.reads.Load() - readsBefore; st.Reloads != 1 || reads > 2 {
				t.Errorf("after unrelated writes and one rules change: %d reads of the rules, stats %+v; want 1 read (2 for a torn in-place write), 1 reload", reads, st)
			}
		})
	}
}
