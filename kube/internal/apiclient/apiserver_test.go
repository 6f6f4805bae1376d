package apiclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/egressd/egressd/internal/kubetest"
)

// TestInformerAgainstAPIServer runs an Informer against a real
// kube-apiserver through a proxy that ends every watch after 300 ms
// (objects created meanwhile must still come, in order: resource
// version continuity), then fails every request (an outage, during
// which an object is deleted and another changed), then answers the
// next watch with a 410 ERROR event: the relist must deliver the
// delete, with the object's last version, and the update.
func TestInformerAgainstAPIServer(t *testing.T) {
	kubetest.Require(t)
	// Ports 21620-21622: below the ephemeral range (32768-60999 here), where
	// any outgoing connection may hold one (46110 was taken once in CI),
	// and apart from kube's 21600 and e2e's 21610.
	srv := kubetest.Start(t, 21620, "")
	gvr := schema.GroupVersionResource{Group: "config.istio.io", Version: "v1alpha2", Resource: "egressrules"}
	srv.Create(t, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, "", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns"}})
	rule := func(name, service string) map[string]any {
		return map[string]any{"apiVersion": "config.istio.io/v1alpha2", "kind": "EgressRule",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"destination": map[string]any{"service": service}}}
	}
	srv.Create(t, gvr, "ns", rule("a", "a.example"))
	srv.Create(t, gvr, "ns", rule("b", "b.example"))

	cfg, err := loadKubeconfig(srv.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	upstream, _ := url.Parse(cfg.server)
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	rp.FlushInterval = -1
	// Phases: 0 watches cut, 1 outage, 2 the watch from before the outage
	// expires (as after a compaction), 3 a watch from a newer version came.
	var phase atomic.Int32
	var watches, outageRequests atomic.Int32
	var staleRV atomic.Value // the resource version watched from during the outage
	staleRV.Store("")
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		watch := r.URL.Query().Get("watch") == "1"
		switch p := phase.Load(); {
		case p == 1:
			if watch {
				staleRV.Store(r.URL.Query().Get("resourceVersion"))
			}
			outageRequests.Add(1)
			http.Error(w, `{"kind":"Status","message":"outage"}`, http.StatusServiceUnavailable)
			return
		case p == 2 && watch && r.URL.Query().Get("resourceVersion") != staleRV.Load().(string):
			phase.Store(3)
		case p == 2 && watch:
			fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version"}}`+"\n")
			return
		case p == 0 && watch:
			watches.Add(1)
			ctx, cancel := context.WithTimeout(r.Context(), 300*time.Millisecond)
			defer cancel()
			r = r.WithContext(ctx)
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	cfg.server = proxy.URL
	cfg.tls = nil

	calls := make(chan string, 100)
	in := NewInformer(newClient(cfg), Resource{Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource}, "", Handlers{
		Add: func(o Object) { calls <- "add " + Name(o) },
		Update: func(old, o Object) {
			calls <- "update " + Name(o) + " " + Nested(o, "spec", "destination", "service").(string)
		},
		Delete: func(o Object) {
			calls <- "delete " + Name(o) + " " + Nested(o, "spec", "destination", "service").(string)
		},
	}, nil)
	in.sleep = func(ctx context.Context, _ time.Duration) bool { return sleepCtx(ctx, 50*time.Millisecond) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	expect := func(want ...string) {
		t.Helper()
		var got []string
		for len(got) < len(want) {
			select {
			case c := <-calls:
				got = append(got, c)
			case <-time.After(20 * time.Second):
				t.Fatalf("calls %q, want %q", got, want)
			}
		}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Fatalf("calls %q, want %q", got, want)
		}
	}
	expect("add a", "add b")
	var want []string
	for i := range 8 {
		name := fmt.Sprintf("c%d", i)
		srv.Create(t, gvr, "ns", rule(name, name+".example"))
		want = append(want, "add "+name)
		time.Sleep(100 * time.Millisecond)
	}
	expect(want...)
	if n := watches.Load(); n < 3 {
		t.Errorf("%d watches: the proxy did not cut them", n)
	}

	phase.Store(1)
	for staleRV.Load().(string) == "" {
		time.Sleep(10 * time.Millisecond)
	}
	res := srv.Client.Resource(gvr).Namespace("ns")
	if err := res.Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := res.Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Object["spec"] = map[string]any{"destination": map[string]any{"service": "a2.example"}}
	if _, err := res.Update(context.Background(), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	expect("update a a2.example", "delete b b.example")
	deadline := time.Now().Add(10 * time.Second)
	for phase.Load() != 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if phase.Load() != 3 {
		t.Error("no watch from the relist's resource version")
	}
}
