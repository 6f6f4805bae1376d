package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// errNotRequest is a well-formed log record that is not a request line.
var errNotRequest = errors.New("not a request line")

// ParseLine reads one line (without its newline): a request line gives its
// Entry (Line unset); another egressd log record an error wrapping
// errNotRequest; anything else an error saying what is wrong.
func ParseLine(line []byte) (*Entry, error) {
	line = bytes.TrimSpace(line)
	if len(line) > 0 && line[0] == '{' {
		f, err := jsonFields(line)
		if err != nil {
			return nil, err
		}
		return entryFrom(f, true)
	}
	f, err := textFields(line)
	if err != nil {
		return nil, err
	}
	return entryFrom(f, false)
}

// jsonFields reads a JSON object of strings and numbers (slog's JSON form
// of a record with only such attributes).
func jsonFields(line []byte) (map[string]string, error) {
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON log record: %v", err)
	}
	if d.More() {
		return nil, errors.New("not a JSON log record: more after the object")
	}
	f := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			f[k] = v
		case json.Number:
			f[k] = v.String()
		default:
			if _, known := requestKeys[k]; known || k == "msg" {
				return nil, fmt.Errorf("%s: want a string or a number, not %s", k, jsonKind(v))
			}
		}
	}
	return f, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

// textFields reads slog's text form: key=value pairs separated by spaces, a
// value quoted as Go quotes strings when it has spaces, '=', '"' or
// characters that are not printable.
func textFields(line []byte) (map[string]string, error) {
	f := make(map[string]string, 16)
	s := string(line)
	for pos := 0; len(s) > 0; {
		eq := strings.IndexByte(s, '=')
		sp := strings.IndexByte(s, ' ')
		if eq <= 0 || sp >= 0 && sp < eq {
			return nil, fmt.Errorf("not a log record: want key=value at byte %d", pos+1)
		}
		key := s[:eq]
		s, pos = s[eq+1:], pos+eq+1
		var v string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: unterminated or malformed quoted value at byte %d", key, pos+1)
			}
			v, _ = strconv.Unquote(q)
			s, pos = s[len(q):], pos+len(q)
			if len(s) > 0 && s[0] != ' ' {
				return nil, fmt.Errorf("%s: want a space after the quoted value at byte %d", key, pos+1)
			}
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			v = s[:end]
			if !utf8.ValidString(v) {
				return nil, fmt.Errorf("%s: the value is not UTF-8", key)
			}
			s, pos = s[end:], pos+end
		}
		n := len(s)
		s = strings.TrimLeft(s, " ")
		pos += n - len(s)
		f[key] = v
	}
	return f, nil
}

// requestKeys are the keys of a request line, requiredKeys those it
// cannot do without.
var (
	requestKeys = map[string]struct{}{
		"time": {}, "client": {}, "orig_dst": {}, "host": {}, "port": {}, "protocol": {}, "upstream": {},
		"rule": {}, "decision": {}, "status": {}, "grpc_status": {}, "bytes_in": {}, "bytes_out": {},
		"duration": {}, "reason": {}, "namespace": {}, "pod": {},
	}
	requiredKeys = []string{"host", "port", "protocol", "decision"}
)

// entryFrom builds the Entry of a record's fields; json says in which form
// the duration is (nanoseconds, or a Go duration).
func entryFrom(f map[string]string, json bool) (*Entry, error) {
	msg, ok := f["msg"]
	if !ok || f["level"] == "" {
		return nil, errors.New("not an egressd log record: no level and msg")
	}
	if msg != "request" {
		return nil, errNotRequest
	}
	for _, k := range requiredKeys {
		if _, ok := f[k]; !ok {
			return nil, fmt.Errorf("request line without %s", k)
		}
	}
	e := &Entry{Time: f["time"], Client: f["client"], OrigDst: f["orig_dst"], Host: f["host"],
		Protocol: f["protocol"], Upstream: f["upstream"], Rule: f["rule"], Decision: f["decision"],
		GRPCStatus: f["grpc_status"], Reason: f["reason"], Namespace: f["namespace"], Pod: f["pod"]}
	port, err := strconv.ParseUint(f["port"], 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port %q: want a number from 0 to 65535", f["port"])
	}
	e.Port = uint16(port)
	for _, n := range []struct {
		key string
		dst *int64
	}{{"bytes_in", &e.BytesIn}, {"bytes_out", &e.BytesOut}} {
		if v, ok := f[n.key]; ok {
			if *n.dst, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s %q: want a whole number", n.key, v)
			}
		}
	}
	if v, ok := f["status"]; ok {
		s, err := strconv.ParseInt(v, 10, 32)
		if err != nil || s < 0 || s > 999 {
			return nil, fmt.Errorf("status %q: want a number from 0 to 999", v)
		}
		e.Status = int(s)
	}
	if v, ok := f["duration"]; ok {
		if json {
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("duration %q: want nanoseconds", v)
			}
			e.Duration = time.Duration(ns)
		} else if e.Duration, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("duration %q: want a duration like 1.5ms", v)
		}
	}
	return e, nil
}
