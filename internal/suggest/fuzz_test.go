package suggest

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/rules"
)

// FuzzSuggest: whatever the log holds, the suggested rules load (what
// egressd check accepts), and each allows every host and port it counts as
// covered with the protocol its comment names.
func FuzzSuggest(f *testing.F) {
	f.Add([]byte("time=x level=INFO msg=request host=a.b.test port=80 protocol=http/1.1 upstream=http decision=would-deny\n" +
		"time=x level=INFO msg=request host=c.b.test port=80 protocol=h2c upstream=http decision=allow namespace=ns\n" +
		`{"level":"INFO","msg":"request","host":"d.b.test:443","port":443,"protocol":"tls-passthrough","upstream":"tls","decision":"allow"}`))
	f.Add([]byte("time=x level=INFO msg=request host=\"x y\" port=1 protocol=grpc decision=deny\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(Options{WildcardMin: 2, IncludeDenied: true})
		r := accesslog.NewReader(bytes.NewReader(data))
		var seen []*accesslog.Entry
		for {
			e, err := r.Next()
			var le *accesslog.LineError
			if err == io.EOF {
				break
			} else if errors.As(err, &le) {
				s.Malformed("in", le.Line, le.Err)
				continue
			} else if err != nil {
				t.Fatal(err)
			}
			s.Add("in", e)
			seen = append(seen, e)
		}
		var out bytes.Buffer
		sum, err := s.Write(&out, "in")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "s.yaml")
		if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		set, _, err := rules.Load(path)
		if err != nil {
			t.Fatalf("suggested rules do not load: %v\n%s", err, out.String())
		}
		if set.Len() != sum.Rules {
			t.Fatalf("%d rules loaded, %d written\n%s", set.Len(), sum.Rules, out.String())
		}
		covered := 0
		for _, e := range seen {
			if _, ok := set.Match(e.Host, e.Port); ok {
				covered++
			}
		}
		if covered < sum.Covered {
			t.Fatalf("%d requests allowed by the rules, %d said covered\n%s", covered, sum.Covered, out.String())
		}
	})
}
