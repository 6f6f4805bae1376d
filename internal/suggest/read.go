package suggest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/egressd/egressd/internal/accesslog"
	"github.com/egressd/egressd/rules"
)

// ReadLog adds the entries of one access log, path or "-" for stdin (named
// "stdin" in the output), its malformed lines and its count of other log
// records. Only a file that cannot be read is an error.
func (s *Suggester) ReadLog(path string, stdin io.Reader) error {
	src, r := path, stdin
	if path == "-" {
		src = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	lr := accesslog.NewReader(r)
	for {
		e, err := lr.Next()
		var le *accesslog.LineError
		switch {
		case err == io.EOF:
			s.Skipped(lr.Skipped())
			return nil
		case errors.As(err, &le):
			s.Malformed(src, le.Line, le.Err)
		case err != nil:
			return fmt.Errorf("read %s: %w", src, err)
		default:
			s.Add(src, e)
		}
	}
}

// Line is the one line `egressd suggest` writes to stderr about s.
func (s Summary) Line() string {
	line := fmt.Sprintf("egressd suggest: %s %d of %s", Covers(s.Rules), s.Covered, plural(s.Requests, "request"))
	if s.Proposals > 0 {
		line += fmt.Sprintf("; %s proposed (comments)", plural(s.Proposals, "wildcard"))
	}
	if len(s.LeftOut) > 0 {
		line += "; left out: " + strings.Join(s.LeftOut, "; ")
	}
	if s.Malformed > 0 {
		line += fmt.Sprintf("; %s not read (listed in the output)", plural(s.Malformed, "malformed line"))
	}
	if s.Skipped > 0 {
		line += fmt.Sprintf("; %s skipped", plural(s.Skipped, "other log record"))
	}
	return line
}

// Loads loads the YAML Write wrote as egressd check would (from a
// temporary file): suggest prints nothing rules.Load refuses.
func Loads(yaml []byte) error {
	dir, err := os.MkdirTemp("", "egressd-suggest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "suggested.yaml")
	if err := os.WriteFile(path, yaml, 0o600); err != nil {
		return err
	}
	_, _, err = rules.Load(path)
	return err
}
