package main

import (
	"bufio"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/egressd/egressd/redirect"
)

// resolvConf is where the default DNS servers are read from.
var resolvConf = "/etc/resolv.conf"

// dnsServers is the resolver set the cgroups may reach on port 53:
// --dns-server when given; otherwise what the node's pods use, the
// nameservers of the agent's resolv.conf (on a node, the host's) plus the
// --dns server. The cluster DNS service is normally in --exclude-cidr.
func dnsServers(cfg *runConfig, log *slog.Logger) []netip.Prefix {
	if len(cfg.DNSServers) > 0 {
		return cfg.DNSServers
	}
	servers, err := readNameservers(resolvConf)
	if err != nil {
		log.Warn("no DNS servers from resolv.conf: only --dns and --exclude-cidr ranges are reachable on port 53", "err", err)
	}
	if cfg.DNS != "" {
		host, _, _ := net.SplitHostPort(cfg.DNS)
		if p, err := redirect.ParsePrefix(host); err == nil {
			servers = append(servers, p)
		} else {
			log.Warn("--dns is not an IP address: not added to the DNS servers the cgroups may reach (use --dns-server)", "dns", cfg.DNS)
		}
	}
	log.Info("DNS servers the cgroups may reach on port 53", "servers", servers)
	return servers
}

// readNameservers returns the nameserver addresses of a resolv.conf file.
func readNameservers(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // a zone or garbage: the C resolver ignores it too
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, sc.Err()
}
