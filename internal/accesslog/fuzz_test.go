package accesslog

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// FuzzReader: any input is read to its end without a panic, every error is
// a LineError naming a line of the input (or io.EOF), and a good line after
// whatever came before is still read, with its line number.
func FuzzReader(f *testing.F) {
	f.Add([]byte(`time=x level=INFO msg=request host=a.test port=80 protocol=http/1.1 decision=allow` + "\n"))
	f.Add([]byte(`{"time":"x","level":"INFO","msg":"request","host":"b.test","port":443,"protocol":"tls-passthrough","decision":"allow","duration":5}`))
	f.Add([]byte("time=x level=INFO msg=request host=\"a\\\" port=80\n{\"msg\":1}\n\xff\xfe\r\n"))
	f.Add([]byte(`{"level":"INFO","msg":"request","host":null,"port":1e3}`))
	const good = `time=x level=INFO msg=request host=last.test port=8080 protocol=h2c decision=would-deny duration=1s`
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1 // the good line's is lines+1
		input := append(append(data[:len(data):len(data)], '\n'), good...)
		r := NewReader(bytes.NewReader(input))
		var last *Entry
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			var le *LineError
			if errors.As(err, &le) {
				if le.Line < 1 || le.Line > lines+1 {
					t.Fatalf("error on line %d of %d: %v", le.Line, lines+1, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("not a LineError: %v", err)
			}
			if e.Line < 1 || e.Line > lines+1 {
				t.Fatalf("entry on line %d of %d", e.Line, lines+1)
			}
			last = e
		}
		if last == nil || last.Host != "last.test" || last.Line != lines+1 || last.Duration != time.Second {
			t.Fatalf("the good last line (%d) was not read back: %+v", lines+1, last)
		}
	})
}

// FuzzRoundTrip: whatever strings and numbers a request line holds, slog's
// JSON and text forms of it read back to the same values.
func FuzzRoundTrip(f *testing.F) {
	f.Add("api.example.test:443", "no egress rule allows the host and port", "would-deny", uint16(443), 200, int64(-1), int64(1500))
	f.Add("a b=\"c\"", "x\n\ty\u2028\xff", "", uint16(0), 0, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, host, reason, decision string, port uint16, status int, bytesIn int64, dur int64) {
		e := sample
		e.Host, e.Reason, e.Decision, e.Port, e.BytesIn, e.Duration = host, reason, decision, port, bytesIn, time.Duration(dur)
		e.Status = status % 1000
		if e.Status < 0 {
			e.Status = -e.Status
		}
		for _, form := range []string{"json", "text"} {
			var buf bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&buf, nil)
			if form == "json" {
				h = slog.NewJSONHandler(&buf, nil)
			}
			request(h, e)
			got, err := NewReader(&buf).Next()
			if err != nil {
				t.Fatalf("%s: %v\n%s", form, err, buf.String())
			}
			want := e
			if form == "json" { // the text form quotes invalid UTF-8 as \xff: it reads back as it was
				want.Host, want.Reason, want.Decision = valid(host), valid(reason), valid(decision)
			}
			got.Time, got.Line = "", 0
			if want.Reason == "" {
				want.Reason = got.Reason // an empty reason is not logged
			}
			if *got != want {
				t.Fatalf("%s: read back\n%+v\nwant\n%+v\n%s", form, *got, want, buf.String())
			}
		}
	})
}

// valid is s as slog's JSON handler writes it: invalid UTF-8 as U+FFFD.
// Each invalid byte becomes one U+FFFD (strings.ToValidUTF8 would replace a
// run of them with one).
func valid(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over invalid UTF-8 yields U+FFFD per byte
	}
	return b.String()
}
