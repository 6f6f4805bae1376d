package l7

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// curl runs Debian's curl against the proxy as if the BPF redirect had sent
// its connection there (--connect-to), and returns status and body.
func curl(t *testing.T, e *env, url string, args ...string) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := strings.SplitN(strings.TrimPrefix(url, "http://"), "/", 2)[0]
	argv := append([]string{"-sS", "--connect-to", host + ":" + e.addr, "-w", "\n%{http_code}", url}, args...)
	out, err := exec.CommandContext(ctx, bin, argv...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v (%s)", argv, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i]
}

func TestCurlAllowAndDeny(t *testing.T) {
	e, u := allowEnv(t, nil)
	code, body := curl(t, e, fmt.Sprintf("http://api.allowed.test:%d/curl", u.port))
	if code != 200 || body != "hello api.allowed.test:"+fmt.Sprint(u.port)+"/curl" {
		t.Fatalf("allowed: %d %q", code, body)
	}
	if got := u.next(t); !strings.HasPrefix(got.Header.Get("User-Agent"), "curl/") {
		t.Fatalf("upstream got User-Agent %q", got.Header.Get("User-Agent"))
	}
	code, body = curl(t, e, fmt.Sprintf("http://evil.example.test:%d/", u.port))
	if code != 403 {
		t.Fatalf("denied: %d %q", code, body)
	}
	mustContain(t, body, "no egress rule allows evil.example.test")
	code, _ = curl(t, e, fmt.Sprintf("http://api.allowed.test:%d/post", u.port), "--data-binary", "payload")
	if got := u.next(t); code != 200 || got.Body != "payload" || got.Method != "POST" {
		t.Fatalf("post: %d, upstream got %s %q", code, got.Method, got.Body)
	}
	u.none(t)
}
