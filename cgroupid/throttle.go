package cgroupid

import (
	"sync"
	"time"
)

// Throttle limits something done per cgroup ID, such as a warning about a
// connection from an unknown cgroup, to once per Every for each ID: a
// process connecting in a loop must not write a log line per connection.
// It remembers at most 1024 IDs; past that it forgets them all (an ID
// may then be due early, never more often than that). The zero value
// allows once a minute.
type Throttle struct {
	Every time.Duration // 0: a minute

	mu   sync.Mutex
	last map[uint64]time.Time
}

// Due reports whether id's turn has come, and if so starts its next wait.
func (t *Throttle) Due(id uint64) bool {
	every := t.Every
	if every <= 0 {
		every = time.Minute
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if at, ok := t.last[id]; ok && now.Sub(at) < every {
		return false
	}
	if t.last == nil || len(t.last) >= 1024 {
		t.last = make(map[uint64]time.Time)
	}
	t.last[id] = now
	return true
}
