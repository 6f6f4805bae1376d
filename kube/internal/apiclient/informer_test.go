package apiclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func obj(name, rv string) string {
	return fmt.Sprintf(`{"metadata":{"namespace":"ns","name":%q,"resourceVersion":%q}}`, name, rv)
}

// fakeAPI speaks the list and watch protocol for one resource: lists
// answer lists[i] in turn (the last one again), watches watches[i] (then
// they hang until the client leaves); it records each watch's
// resourceVersion.
type fakeAPI struct {
	lists, watches []string
	mu             sync.Mutex
	nl, nw         int
	watchRVs       []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/pods" || r.Header.Get("Accept") != "application/json" || r.Header.Get("User-Agent") != "egressd" {
		http.Error(w, "unexpected request "+r.URL.String(), 400)
		return
	}
	f.mu.Lock()
	if r.URL.Query().Get("watch") != "1" {
		body := f.lists[min(f.nl, len(f.lists)-1)]
		f.nl++
		f.mu.Unlock()
		fmt.Fprint(w, body)
		return
	}
	f.watchRVs = append(f.watchRVs, r.URL.Query().Get("resourceVersion"))
	i := f.nw
	f.nw++
	f.mu.Unlock()
	if i >= len(f.watches) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	fmt.Fprint(w, f.watches[i])
}

func (f *fakeAPI) rvs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.watchRVs...)
}

// record runs an Informer against f, returning the handlers' calls as
// "add a 1", "update a 1->2", "delete b 3", once n of them came and
// watches watches were made.
func record(t *testing.T, f *fakeAPI, n, watches int) []string {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	calls := make(chan string, 100)
	in := NewInformer(ForServer(srv.URL), Resource{Version: "v1", Resource: "pods"}, "", Handlers{
		Add: func(o Object) { calls <- "add " + Name(o) + " " + ResourceVersion(o) },
		Update: func(old, o Object) {
			calls <- "update " + Name(o) + " " + ResourceVersion(old) + "->" + ResourceVersion(o)
		},
		Delete: func(o Object) { calls <- "delete " + Name(o) + " " + ResourceVersion(o) },
	}, nil)
	in.sleep = func(context.Context, time.Duration) bool { return true }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case c := <-calls:
			got = append(got, c)
		case <-timeout:
			t.Fatalf("after %q: no more calls", got)
		}
	}
	if !in.HasSynced() {
		t.Error("not synced")
	}
	for len(f.rvs()) < watches {
		select {
		case <-timeout:
			t.Fatalf("watched from %q only", f.rvs())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return got
}

// TestInformerRelistsAfterGone: a watch that expires (an ERROR event of
// code 410) makes the informer list again, and hand over the objects
// changed meanwhile as updates and those gone as deletes, with their
// last version known.
func TestInformerRelistsAfterGone(t *testing.T) {
	f := &fakeAPI{
		lists: []string{
			`{"metadata":{"resourceVersion":"10"},"items":[` + obj("a", "1") + `,` + obj("b", "2") + `]}`,
			`{"metadata":{"resourceVersion":"20"},"items":[` + obj("a", "12") + `,` + obj("c", "13") + `]}`,
		},
		watches: []string{
			`{"type":"MODIFIED","object":` + obj("b", "11") + `}` + "\n" +
				`{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 10 (15)"}}`,
		},
	}
	got := strings.Join(record(t, f, 6, 2), ", ")
	want := "add a 1, add b 2, update b 2->11, update a 1->12, add c 13, delete b 11"
	if got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
	if rvs := strings.Join(f.rvs(), " "); !strings.HasPrefix(rvs, "10 20") {
		t.Errorf("watched from %s, want 10 then 20 (the relist's)", rvs)
	}
}

// TestInformerResumesWhereTheWatchEnded: a server that ends the watch
// (its timeout, a restart) is watched again from the last resource
// version seen, a bookmark's too, so no event is lost or repeated.
func TestInformerResumesWhereTheWatchEnded(t *testing.T) {
	f := &fakeAPI{
		lists: []string{`{"metadata":{"resourceVersion":"10"},"items":[` + obj("a", "1") + `]}`},
		watches: []string{
			`{"type":"ADDED","object":` + obj("b", "11") + `}` + "\n" +
				`{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}}`,
			`{"type":"DELETED","object":` + obj("a", "16") + `}`,
			"",
		},
	}
	got := strings.Join(record(t, f, 3, 3), ", ")
	if want := "add a 1, add b 11, delete a 16"; got != want {
		t.Errorf("calls %s\nwant  %s", got, want)
	}
	if rvs := strings.Join(f.rvs(), " "); !strings.HasPrefix(rvs, "10 15 16") {
		t.Errorf("watched from %s, want 10 15 16", rvs)
	}
	if f.nl != 1 {
		t.Errorf("%d lists, want 1 (an ended watch is resumed, not relisted)", f.nl)
	}
}

// TestListStatusError: an error status comes back with the server's
// message, not only its code.
func TestListStatusError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(403)
		fmt.Fprint(w, `{"kind":"Status","reason":"Forbidden","message":"pods is forbidden"}`)
	}))
	defer srv.Close()
	_, _, err := ForServer(srv.URL).List(context.Background(), Resource{Version: "v1", Resource: "pods"}, "", "")
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden: pods is forbidden") {
		t.Errorf("list: %v, want the 403 and its message", err)
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	var last time.Duration
	for i := range 12 {
		d := b.next()
		if d > maxBackoff || d < minBackoff*4/5 || (i < 5 && d < last) {
			t.Fatalf("failure %d: wait %v (after %v)", i+1, d, last)
		}
		last = d
	}
	if last < maxBackoff*4/5 {
		t.Errorf("wait after 12 failures %v, want about %v", last, maxBackoff)
	}
}
