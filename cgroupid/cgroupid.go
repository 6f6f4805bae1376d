// Package cgroupid finds cgroup v2 directories by their ID, the number the
// BPF connect hooks record for the socket that connected
// (bpf_get_current_cgroup_id, which is the directory's inode number on the
// cgroup2 filesystem). cmd/egressd uses it to tell which --cgroup-rules
// scope a connection belongs to; package pods, which pod.
//
// An Index walks the directory trees below its roots and remembers every
// directory's ID. An ID it does not know makes it walk again, at once (a
// pod's cgroup is created just before its first process runs, and its
// first connection must be placed), but an ID that a walk did not find
// is not looked for again for a while (NegativeTTL), so a process cannot
// make the agent walk the tree once per connection. Walks are serialized;
// lookups that wait on a walk share it.
//
// On hosts with the hybrid layout, give the cgroup2 mount's directories
// (/sys/fs/cgroup/unified/...): the recorded IDs are those of the v2
// hierarchy.
package cgroupid

import (
	"io/fs"
	"maps"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultNegativeTTL is how long an ID a walk did not find is not looked
// for again.
const DefaultNegativeTTL = time.Second

// Index maps cgroup IDs to directories below its roots. It is safe for
// concurrent use.
type Index struct {
	roots []string
	ttl   time.Duration

	mu      sync.Mutex // serializes walks; guards the fields below
	paths   map[uint64]string
	missed  map[uint64]time.Time // IDs a walk did not find, and when
	walks   uint64
	walking chan struct{} // closed when the walk under way ends; nil: none
}

// New returns an Index of the directories at and below roots (cgroup v2
// directories, such as egressd's --cgroup ones). It walks them once now.
func New(roots ...string) *Index {
	x := &Index{roots: roots, ttl: DefaultNegativeTTL, paths: map[uint64]string{}, missed: map[uint64]time.Time{}}
	x.walk()
	return x
}

// ID returns the cgroup ID of dir (its inode number), or false when dir
// cannot be read.
func ID(dir string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// Path returns the directory whose cgroup ID is id, walking the roots
// again when id is not known (see the package doc). 0 is never found.
func (x *Index) Path(id uint64) (string, bool) {
	if id == 0 {
		return "", false
	}
	x.mu.Lock()
	for {
		if p, ok := x.paths[id]; ok {
			x.mu.Unlock()
			return p, true
		}
		if t, ok := x.missed[id]; ok && time.Since(t) < x.ttl {
			x.mu.Unlock()
			return "", false
		}
		if x.walking == nil {
			break
		}
		// A walk is under way; it may have started before the cgroup
		// existed, so look again after it, then walk if still missing.
		w := x.walking
		x.mu.Unlock()
		<-w
		x.mu.Lock()
		if p, ok := x.paths[id]; ok {
			x.mu.Unlock()
			return p, true
		}
	}
	x.mu.Unlock()
	x.walk()
	x.mu.Lock()
	defer x.mu.Unlock()
	p, ok := x.paths[id]
	if !ok {
		x.missed[id] = time.Now()
	}
	return p, ok
}

// Walk walks the roots now, forgetting the directories removed since the
// last walk (package pods does so when the pods of the node change).
func (x *Index) Walk() { x.walk() }

// Paths returns a copy of the directories known by ID, as of the last walk.
func (x *Index) Paths() map[uint64]string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return maps.Clone(x.paths)
}

// Walks returns how many times the roots were walked (tests, metrics).
func (x *Index) Walks() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.walks
}

// walk reads the trees and replaces the map: directories removed since
// the last walk are forgotten.
func (x *Index) walk() {
	x.mu.Lock()
	for x.walking != nil { // one walk at a time
		w := x.walking
		x.mu.Unlock()
		<-w
		x.mu.Lock()
	}
	done := make(chan struct{})
	x.walking = done
	x.mu.Unlock()

	paths := make(map[uint64]string, len(x.paths))
	for _, root := range x.roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil // a cgroup removed under the walk, say
			}
			if id, ok := ID(p); ok {
				paths[id] = p
			}
			return nil
		})
	}

	x.mu.Lock()
	x.paths = paths
	x.walks++
	now := time.Now()
	for id, t := range x.missed {
		if now.Sub(t) >= x.ttl {
			delete(x.missed, id)
		}
	}
	x.walking = nil
	x.mu.Unlock()
	close(done)
}
