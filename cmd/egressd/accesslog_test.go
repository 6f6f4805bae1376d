package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestAccessLogFlag(t *testing.T) {
	ok := []string{"--rules", "r", "--cgroup", "c"}
	for _, tc := range []struct {
		args []string
		env  []string
		want string // "" is on
	}{
		{ok, nil, ""},
		{append([]string{"--access-log", "off"}, ok...), nil, "off"},
		{ok, []string{"EGRESSD_ACCESS_LOG", "off"}, "off"},
		{append([]string{"--access-log=on"}, ok...), []string{"EGRESSD_ACCESS_LOG", "off"}, "on"},
	} {
		cfg, err := parseRunFlags(tc.args, env(tc.env...), io.Discard)
		if err != nil || cfg.AccessLog != tc.want {
			t.Errorf("%v %v: %q, %v; want %q", tc.args, tc.env, cfg.AccessLog, err, tc.want)
		}
	}
	for _, parse := range []func() error{
		func() error {
			_, err := parseRunFlags(append([]string{"--access-log", "maybe"}, ok...), env(), io.Discard)
			return err
		},
		func() error {
			_, err := parseGatewayFlags([]string{"--rules", "r"}, env("EGRESSD_ACCESS_LOG", "1"), io.Discard)
			return err
		},
	} {
		if code := exitCode(parse(), io.Discard); code != exitUsage {
			t.Errorf("bad --access-log: exit code %d, want %d", code, exitUsage)
		}
	}
}

// TestNewAccessLog: lines in --log-format, all written by close; off writes nothing.
func TestNewAccessLog(t *testing.T) {
	for _, tc := range []struct{ onOff, format, want string }{
		{"", "text", "level=INFO msg=request k=v\n"},
		{"on", "json", `"level":"INFO","msg":"request","k":"v"}` + "\n"},
		{"off", "json", ""},
	} {
		var out bytes.Buffer
		a := newAccessLog(tc.onOff, tc.format, &out)
		a.logger.Info("request", "k", "v")
		if err := a.close(); err != nil || !strings.HasSuffix(out.String(), tc.want) || tc.want == "" && out.Len() != 0 {
			t.Errorf("%+v: after close %q (%v), want a line ending %q", tc, out.String(), err, tc.want)
		}
	}
}
