package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestAllowUpstreamFlag(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--rules", "r", "--cgroup", "c", "--allow-upstream", "127.0.0.53",
		"--allow-upstream", "fd00:1::/64"}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.AllowUpstream); got != "[127.0.0.53/32 fd00:1::/64]" {
		t.Errorf("--allow-upstream: %s", got)
	}
	cfg, err = parseRunFlags([]string{"--rules", "r", "--cgroup", "c"}, env("EGRESSD_ALLOW_UPSTREAM", "169.254.0.0/16, ::1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.AllowUpstream); got != "[169.254.0.0/16 ::1/128]" {
		t.Errorf("EGRESSD_ALLOW_UPSTREAM: %s", got)
	}
	g, err := parseGatewayFlags([]string{"--rules", "r", "--allow-upstream", "127.0.0.0/8"}, env(), io.Discard)
	if err != nil || fmt.Sprint(g.AllowUpstream) != "[127.0.0.0/8]" {
		t.Errorf("gateway --allow-upstream: %v %v", g, err)
	}
}

func TestParseRunFlags(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--rules", "/etc/egressd", "--cgroup", "/a", "--cgroup=/b",
		"--node-addr", "10.0.0.1", "--node-addr", "fd00::1", "--exclude-cidr", "10.0.0.0/8",
		"--egress-proxy", "http://u:p@squid:3128", "--dns", "10.96.0.10", "--dial", "original",
		"--socket-mark", "0x1e7", "--shutdown-timeout", "3s"}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rules != "/etc/egressd" || strings.Join(cfg.Cgroups, " ") != "/a /b" {
		t.Errorf("rules %q cgroups %q", cfg.Rules, cfg.Cgroups)
	}
	if len(cfg.NodeAddrs) != 2 || cfg.NodeAddrs[1] != netip.MustParseAddr("fd00::1") {
		t.Errorf("node addrs %v", cfg.NodeAddrs)
	}
	if cfg.ProxyPort != 15001 || cfg.Admin != "127.0.0.1:15090" || cfg.LogFormat != "text" {
		t.Errorf("defaults: port %d admin %q log %q", cfg.ProxyPort, cfg.Admin, cfg.LogFormat)
	}
	if cfg.DNS != "10.96.0.10:53" || cfg.Dial != "original" || cfg.SocketMark != 0x1e7 {
		t.Errorf("dns %q dial %q mark %#x", cfg.DNS, cfg.Dial, cfg.SocketMark)
	}
	if cfg.EgressProxy.Host != "squid:3128" || cfg.ShutdownTimeout != 3*time.Second {
		t.Errorf("egress proxy %v shutdown %v", cfg.EgressProxy, cfg.ShutdownTimeout)
	}
}

func TestParseRunFlagsEnv(t *testing.T) {
	getenv := env("EGRESSD_RULES", "/env/rules", "EGRESSD_CGROUP", "/x, /y",
		"EGRESSD_PROXY_PORT", "16001", "EGRESSD_NODE_ADDR", "192.0.2.1",
		"EGRESSD_DENY_UDP", "true", "EGRESSD_LOG_FORMAT", "json")
	cfg, err := parseRunFlags([]string{"--proxy-port", "17001"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Rules != "/env/rules" || strings.Join(cfg.Cgroups, " ") != "/x /y" {
		t.Errorf("rules %q cgroups %q", cfg.Rules, cfg.Cgroups)
	}
	if cfg.ProxyPort != 17001 {
		t.Errorf("the flag must win over the environment: port %d", cfg.ProxyPort)
	}
	if !cfg.DenyUDP || cfg.LogFormat != "json" || len(cfg.NodeAddrs) != 1 {
		t.Errorf("deny-udp %v log %q node %v", cfg.DenyUDP, cfg.LogFormat, cfg.NodeAddrs)
	}
}

func TestParseRunFlagsUsageErrors(t *testing.T) {
	ok := []string{"--rules", "r", "--cgroup", "c"}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"no rules", []string{"--cgroup", "c"}, nil},
		{"unknown flag", append([]string{"--nope"}, ok...), nil},
		{"extra argument", append(ok, "extra"), nil},
		{"bad port", append([]string{"--proxy-port", "70000"}, ok...), nil},
		{"bad dial", append([]string{"--dial", "sideways"}, ok...), nil},
		{"bad log format", append([]string{"--log-format", "xml"}, ok...), nil},
		{"two v4 node addrs", append([]string{"--node-addr", "10.0.0.1", "--node-addr", "10.0.0.2"}, ok...), nil},
		{"bad egress proxy", append([]string{"--egress-proxy", "socks5://x:1"}, ok...), nil},
		{"bad env port", ok, []string{"EGRESSD_PROXY_PORT", "x"}},
		{"bad env cidr", ok, []string{"EGRESSD_EXCLUDE_CIDR", "10.0.0.0/8,nonsense"}},
		{"bad env bool", ok, []string{"EGRESSD_DENY_UDP", "maybe"}},
		{"bad allow-upstream", append([]string{"--allow-upstream", "127.0.0.1/33"}, ok...), nil},
		{"negative timeout", append([]string{"--shutdown-timeout", "-1s"}, ok...), nil},
		{"max-conns below -1", append([]string{"--max-conns", "-2"}, ok...), nil},
		{"bad env max-conns-per-client", ok, []string{"EGRESSD_MAX_CONNS_PER_CLIENT", "many"}},
		{"bad memory limit", append([]string{"--memory-limit", "lots"}, ok...), nil},
		{"bad env memory limit", ok, []string{"EGRESSD_MEMORY_LIMIT", "12TB"}},
		{"allow-udp 443", append([]string{"--allow-udp", "443"}, ok...), nil},
		{"allow-udp CIDR:443", append([]string{"--allow-udp", "10.0.0.0/8:443"}, ok...), nil},
		{"allow-udp no port", append([]string{"--allow-udp", "10.0.0.0/8"}, ok...), nil},
		{"bad env allow-udp", ok, []string{"EGRESSD_ALLOW_UDP", "5353,nonsense:53"}},
		{"bad dns-server", append([]string{"--dns-server", "resolver.local"}, ok...), nil},
		{"kubernetes without node name", append([]string{"--kubernetes"}, ok...), nil},
		{"env kubernetes without node name", ok, []string{"EGRESSD_KUBERNETES", "true"}},
		{"kubernetes with cgroup-rules", append([]string{"--kubernetes", "--node-name", "n", "--cgroup-rules", "/c=r"}, ok...), nil},
		{"kubeconfig without kubernetes", append([]string{"--kubeconfig", "k"}, ok...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRunFlags(tc.args, env(tc.env...), io.Discard)
			if code := exitCode(err, io.Discard); code != exitUsage {
				t.Fatalf("exit code %d (%v), want %d", code, err, exitUsage)
			}
		})
	}
}

func TestParseRunFlagsKubernetes(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--rules", "r", "--cgroup", "c"},
		env("EGRESSD_KUBERNETES", "true", "EGRESSD_NODE_NAME", "node-1", "EGRESSD_GLOBAL_NAMESPACE", "platform", "EGRESSD_KUBECONFIG", "/k"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Kubernetes || cfg.NodeName != "node-1" || cfg.GlobalNamespace != "platform" || cfg.Kubeconfig != "/k" {
		t.Fatalf("%+v", cfg)
	}
	_, err = parseRunFlags([]string{"--rules", "r", "--cgroup", "c", "--kubernetes"}, env(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--node-name is required with --kubernetes") {
		t.Fatalf("no node name: %v", err)
	}
}

func TestParseRunFlagsUninstallNeedsNoRules(t *testing.T) {
	cfg, err := parseRunFlags([]string{"--uninstall", "--pin-dir", "/sys/fs/bpf/x"}, env(), io.Discard)
	if err != nil || !cfg.Uninstall || cfg.PinDir != "/sys/fs/bpf/x" {
		t.Fatalf("cfg %+v err %v", cfg, err)
	}
}

func TestParseRunFlagsHelp(t *testing.T) {
	var out strings.Builder
	_, err := parseRunFlags([]string{"-h"}, env(), &out)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != exitOK {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{"--rules", "EGRESSD_PROXY_PORT", "-egress-proxy"} {
		if !strings.Contains(out.String(), strings.TrimPrefix(want, "-")) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}
