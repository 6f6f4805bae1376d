// Package redirect makes egressd transparent: it loads the BPF programs of
// package bpf, attaches them to cgroup v2 directories, and answers the
// proxy's question "where was this accepted connection going?".
//
// Default deny, for every process in an attached cgroup:
//
//   - Sockets: only TCP (MPTCP included: its subflows are TCP) and UDP
//     sockets can be created; raw, ping (ICMP), UDP-Lite, SCTP and any
//     other inet socket fail with EPERM (cgroup/sock_create).
//   - TCP: every connect is rewritten to the proxy: to 127.0.0.1 (or ::1)
//     on Options.ProxyPort for sockets in the agent's own network
//     namespace, to Options.NodeAddrs for sockets in other namespaces
//     (pods). Left alone: loopback, Options.ExcludeCIDRs, port 53 of
//     Options.DNSServers, and node address : ProxyPort (the loop guard;
//     other ports of the node address are redirected like any address).
//   - UDP: refused (EPERM) but to loopback, ExcludeCIDRs, port 53 of
//     DNSServers and Options.AllowUDP; port 443 (QUIC) always.
//   - 0.0.0.0, :: and ::ffff:0.0.0.0 ("this host") are refused (EPERM).
//   - The optional guards (guard.go; Redirector.Guards says which run):
//     packets with IPv4 options or an IPv6 routing header are dropped
//     (cgroup_skb/egress: their first hop is not the judged destination);
//     packet sockets and every family but unix, netlink and inet fail with
//     EPERM (an lsm_cgroup program).
//
// Exempt cgroups (Options.ExemptCgroups, Options.ExemptSelf,
// Redirector.SetExempt and ReplaceExempt) are left alone, with their whole
// subtree: the hooks look up the connecting process's cgroup and each
// ancestor in a pinned map, before any other decision but the own-socket
// one. The map is shared with the previous agent during a take-over; an
// Attach reads what it holds, replaces the reasons it owns (the flag, the
// agent's own cgroup), keeps the others until their owner replaces them,
// and puts it back as it found it if the attach fails.
//
// egressd's own sockets are recognised by their cookie: the agent
// registers each socket it is about to connect (Redirector.Control, the
// Control hook of its dialers) and the connect hook lets exactly that
// socket through, once. This and not the agent's cgroup or network
// namespace: the DaemonSet's agent runs inside the cgroup it redirects, in
// the host namespace with host-network pods; and not a socket mark, which
// a process with only CAP_NET_RAW may set (Linux 5.17+).
//
// Fail closed: a pod socket with no node address of its family, a stream
// socket that is not TCP, or a connect that can't be recorded is sent to
// port 0 on loopback and fails with ECONNREFUSED; never does it pass
// through unredirected. With no agent running the programs stay attached
// and redirected connects are refused by the closed proxy port.
//
// Original destinations live on the redirected socket (socket storage)
// until its SYN, then in a hash keyed by the connection as the proxy sees
// it, from which Origin (or Lookup) takes them; an entry whose connection
// closes first is removed then. No entry is ever evicted for another, so
// no cgroup's churn can cost another's connections; a full map (65,536
// connections redirected and not yet accepted) makes new connects miss,
// which the proxy refuses. Origin also returns the cgroup ID of the
// process that connected.
//
// # Lifecycle
//
// Attach loads fresh programs and takes over what a previous agent pinned
// under Options.PinDir (default <bpffs>/egressd, bpffs mounted if needed):
// the pinned maps are reused, so original destinations recorded by the old
// programs are still found, and each pinned cgroup link is switched to the
// new program atomically (BPF_LINK_UPDATE), with no moment at which a
// connect bypasses the proxy. Close releases the agent's file descriptors
// and keeps the pins: the programs stay attached. Uninstall detaches them
// and removes every pin. One agent per pin directory at a time, but for an
// agent hand-over (cmd/egressd): the new agent attaches while the old one
// still serves, and both share the pinned original-destination map, each
// reading (and removing) only the entries of the connections it accepted.
// HandoverToken and CheckHandoverToken (handover.go) let the old agent
// check that the new one opened the same pins.
//
// Traps: the agent must run in the host network namespace (the one its
// proxy listens in); its own sockets must go through Control if it runs
// inside an attached cgroup (and its resolver must be in DNSServers or
// ExcludeCIDRs, or use Control too); the proxy must
// listen on 127.0.0.1, ::1 and the node addresses at ProxyPort. Original
// destinations are keyed by the connection as the proxy sees it (client
// address and port, proxy address and port), which the kernel keeps unique
// among the proxy's live connections whatever namespace the client is in;
// so there must be no NAT between a pod and the node address. Lookup
// removes the entry it returns: ask once per connection.
//
// # Requirements
//
// Root with CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN only to mount bpffs
// when none is), cgroup v2, and Linux 5.14 or newer. The oldest pieces
// used, by version: cgroup/sock_create with the socket's type and
// protocol (4.10), LRU hash and LPM trie maps (4.11), SO_COOKIE (4.12),
// the sockops state callback (4.16), sockops and socket cookies in
// sock_addr programs (5.0), ctx->sk in sock_addr programs and socket
// storage (5.3), bpf_get_netns_cookie and bpf_get_current_cgroup_id in
// sock_addr programs, bpf_get_current_ancestor_cgroup_id in sock_addr
// and sock_create programs, and cgroup BPF links with BPF_LINK_UPDATE (5.7),
// skops->sk for socket storage in sockops (5.10), and the two
// that set the floor: SO_NETNS_COOKIE to learn the host namespace's cookie
// and BPF_MAP_LOOKUP_AND_DELETE_ELEM on hash maps (5.14). The packet guard
// needs more, and is left off without it: lsm_cgroup (6.0), the bpf LSM
// active, CAP_PERFMON.
//
// Errors that callers may branch on wrap ErrNotRoot, ErrNoCgroupV2 or
// ErrUnsupported (BPF disabled or kernel too old; the message names what
// is missing).
package redirect
