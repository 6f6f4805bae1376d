package body

import (
	"testing"
	"time"
)

// TestDeadlineCoarse: a deadline is never earlier than asked, at most
// timeout/deadlineSlack later, and set again only when it must move.
func TestDeadlineCoarse(t *testing.T) {
	var d Deadline
	t0 := time.Now()
	const idle, header = 120 * time.Second, 10 * time.Second
	check := func(now time.Time, timeout time.Duration, wantSet bool) {
		t.Helper()
		at, set := d.next(now, timeout)
		if set != wantSet {
			t.Fatalf("at +%v, timeout %v: set = %v, want %v", now.Sub(t0), timeout, set, wantSet)
		}
		if early := now.Add(timeout).Sub(at); early > 0 {
			t.Fatalf("at +%v, timeout %v: deadline %v early", now.Sub(t0), timeout, early)
		}
		if late := at.Sub(now.Add(timeout)); late > timeout/deadlineSlack {
			t.Fatalf("at +%v, timeout %v: deadline %v late", now.Sub(t0), timeout, late)
		}
	}
	check(t0, idle, true)                        // unknown: set
	check(t0.Add(time.Millisecond), idle, false) // moved by 1 ms: kept
	check(t0.Add(idle/deadlineSlack), idle, false)
	check(t0.Add(idle/deadlineSlack+time.Millisecond), idle, true) // would be early: set
	now := t0.Add(time.Minute)
	check(now, header, true)                        // a shorter timeout: set
	check(now.Add(time.Millisecond), header, false) // kept
	check(now.Add(2*time.Millisecond), idle, true)  // longer again: set
	check(now.Add(2*time.Millisecond+time.Microsecond), idle, false)
}
