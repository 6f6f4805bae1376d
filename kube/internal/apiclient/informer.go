package apiclient

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Handlers are an Informer's callbacks, each optional. They are called on
// one goroutine, in order; they must not block for long.
type Handlers struct {
	Add    func(obj Object)
	Update func(old, obj Object)
	// Delete gets the last version known of an object deleted, also of one
	// that vanished while the informer was not watching.
	Delete func(obj Object)
}

// Backoff bounds between failed attempts to list or watch.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// Informer keeps the objects of one resource in every namespace: it
// lists them, calls Add for each, is then synced, and watches from the
// list's resource version, reconnecting from the last one seen when a
// watch ends; when that version is too old (410 Gone) it lists again and
// calls Update for the objects changed meanwhile and Delete for those
// gone.
type Informer struct {
	client        *Client
	res           Resource
	fieldSelector string
	h             Handlers
	log           *slog.Logger

	objects map[string]Object // by namespace/name; the Run goroutine's
	rv      string
	synced  atomic.Bool
	once    sync.Once
	syncCh  chan struct{}
	sleep   func(context.Context, time.Duration) bool // tests; nil: a timer
}

// NewInformer returns an Informer of res's objects matching fieldSelector
// ("" all); log (nil: discard) hears of errors.
func NewInformer(c *Client, res Resource, fieldSelector string, h Handlers, log *slog.Logger) *Informer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Informer{client: c, res: res, fieldSelector: fieldSelector, h: h, log: log,
		objects: map[string]Object{}, syncCh: make(chan struct{})}
}

// HasSynced reports whether the first list went through the handlers.
func (in *Informer) HasSynced() bool { return in.synced.Load() }

// Synced is closed once the first list went through the handlers.
func (in *Informer) Synced() <-chan struct{} { return in.syncCh }

// Run lists and watches until ctx ends.
func (in *Informer) Run(ctx context.Context) {
	b := backoff{}
	listed := false
	for ctx.Err() == nil {
		if !listed {
			if err := in.list(ctx); err != nil {
				in.fail(ctx, &b, "list", err)
				continue
			}
			listed = true
			b.reset()
		}
		from := in.rv
		err := in.client.Watch(ctx, in.res, in.fieldSelector, from, in.event)
		switch {
		case ctx.Err() != nil:
			return
		case Gone(err):
			in.log.Info("kubernetes: watch expired, listing again", "resource", in.res.String(), "err", err.Error())
			listed = false
		case err != nil:
			if in.rv != from {
				b.reset() // the watch worked for a while: a new failure
			}
			in.fail(ctx, &b, "watch", err)
		default:
			b.reset() // the server ended the watch: go on from in.rv
		}
	}
}

// fail logs err (every failure until the backoff is at its bound, then
// one in ten) and waits.
func (in *Informer) fail(ctx context.Context, b *backoff, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	d := b.next()
	if b.n <= 6 || b.n%10 == 0 {
		in.log.Warn("kubernetes: "+what+" failed", "resource", in.res.String(), "retry_in", d.Round(time.Millisecond).String(),
			"failures", b.n, "err", err.Error())
	}
	sleep := in.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	sleep(ctx, d)
}

// list lists the objects and hands the differences from what was known
// to the handlers.
func (in *Informer) list(ctx context.Context) error {
	items, rv, err := in.client.List(ctx, in.res, "", in.fieldSelector)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(items))
	for _, obj := range items {
		k := key(obj)
		seen[k] = true
		in.upsert(k, obj)
	}
	for k, old := range in.objects {
		if !seen[k] {
			delete(in.objects, k)
			if in.h.Delete != nil {
				in.h.Delete(old)
			}
		}
	}
	in.rv = rv
	in.once.Do(func() {
		in.synced.Store(true)
		close(in.syncCh)
	})
	return nil
}

func (in *Informer) upsert(k string, obj Object) {
	old, ok := in.objects[k]
	in.objects[k] = obj
	switch {
	case !ok:
		if in.h.Add != nil {
			in.h.Add(obj)
		}
	case ResourceVersion(old) != ResourceVersion(obj) && in.h.Update != nil:
		in.h.Update(old, obj)
	}
}

// event applies one watch event.
func (in *Informer) event(ev Event) {
	if rv := ResourceVersion(ev.Object); rv != "" {
		in.rv = rv
	}
	k := key(ev.Object)
	switch ev.Type {
	case "ADDED", "MODIFIED":
		in.upsert(k, ev.Object)
	case "DELETED":
		delete(in.objects, k)
		if in.h.Delete != nil {
			in.h.Delete(ev.Object)
		}
	}
}

func key(obj Object) string { return Namespace(obj) + "/" + Name(obj) }

type backoff struct{ n int }

func (b *backoff) reset() { b.n = 0 }

// next is the wait after the n-th failure in a row: doubling from
// minBackoff to maxBackoff, with up to a fifth of jitter.
func (b *backoff) next() time.Duration {
	b.n++
	d := maxBackoff
	if b.n < 6 {
		d = min(minBackoff<<(b.n-1), maxBackoff)
	}
	return d - time.Duration(rand.Int64N(int64(d)/5))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
