package cgroupid

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	var th Throttle
	if !th.Due(1) || th.Due(1) {
		t.Fatal("the first call for an ID is due, the second within a minute is not")
	}
	if !th.Due(2) {
		t.Fatal("another ID has its own turn")
	}
	short := Throttle{Every: time.Nanosecond}
	short.Due(3) // the next call is at least a nanosecond later
	if !short.Due(3) {
		t.Fatal("an ID is due again once Every has passed")
	}
	for id := uint64(100); id < 100+2000; id++ {
		th.Due(id)
	}
	if n := len(th.last); n > 1024 {
		t.Fatalf("remembers %d IDs, want ≤ 1024", n)
	}
}
