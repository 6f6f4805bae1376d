package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/egressd/egressd/internal/metric"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	reg := metric.NewRegistry()
	reg.MustRegister(metric.NewGoCollector())
	var ready readiness
	a, err := startAdmin("127.0.0.1:0", adminHandler(reg, &ready, log), log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.shutdown(context.Background())
	base := "http://" + a.addr.String()

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not attached") {
		t.Errorf("/readyz before attach: %d %q", code, body)
	}
	ready.attached(func() error { return nil })
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not listening") {
		t.Errorf("/readyz before listen: %d %q", code, body)
	}
	ready.listening.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
	ready.stopping.Store(true)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz stopping: %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, go_goroutines missing", code)
	}
	if err := a.shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
