// Package e2e holds egressd's end-to-end tests. They build the egressd
// binary and drive it as a user would, in the topology of docs/design.md: an
// "external" network namespace with upstream services on 198.19.5.0/24 and
// 2001:2:0:e5::/64 (plain HTTP, HTTPS with a CA the test generates, h2c,
// gRPC and a DNS server), clients — real curl and a gRPC client — in a test
// cgroup in the host namespace and in a "pod" namespace joined by a veth.
//
// The upstreams tell a proxied request from one that bypassed egressd by the
// address it arrived on: clients connect to a decoy address (.10), while the
// test DNS server resolves every name to another (.11), which egressd dials
// in its default --dial=resolve mode. A request seen on the decoy address
// went around the proxy.
//
// Besides the request cases (allowed, denied, wildcard, HTTPS-marked port,
// TLS passthrough (the app's own TLS, decided by SNI), h2c, gRPC, IPv6, from
// the host and from a pod), they cover rules reloads, the admin endpoints,
// draining on SIGTERM, a SIGKILLed agent replaced on the same pins,
// useEgressProxy through `egressd gateway`, --dial=original, --exclude-cidr,
// the agent running inside the cgroup it redirects, and the agent with only
// the minimum capabilities (CAP_BPF, CAP_NET_ADMIN).
//
// The tests need root, cgroup v2 and BPF; they skip without them, and fail
// instead under EGRESSD_E2E=require. Everything they create (namespaces,
// cgroups, pins, processes) is removed on cleanup, also on failure.
//
// This file only carries the package documentation; the tests are in the
// _test.go files.
package e2e
