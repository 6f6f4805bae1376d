// Package redirect makes egressd transparent: it loads the BPF programs of
// package bpf, attaches them to cgroup v2 directories, and answers the
// proxy's question "where was this accepted connection going?".
//
// Every outbound TCP connect from a process in an attached cgroup is
// rewritten to the proxy: to 127.0.0.1 (or ::1) on Options.ProxyPort for
// sockets in the agent's own network namespace, to Options.NodeAddrs for
// sockets in other namespaces (pods). Sockets carrying Options.Mark,
// loopback, the node addresses, Options.ExcludeCIDRs and TCP port 53 are
// left alone. UDP to port 443 (QUIC) is refused so clients fall back to
// TCP; DNS (port 53) is always allowed; Options.DenyUDP refuses the rest.
//
// Fail closed: a pod socket with no node address of its family, a stream
// socket that is not TCP (SCTP; MPTCP subflows are TCP), or a connect that
// can't be recorded is sent to port 0 on loopback and fails with
// ECONNREFUSED; never does it pass through unredirected. Refused UDP fails
// with EPERM. With no agent running the programs stay attached and redirected
// connects are refused by the closed proxy port.
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
// and removes every pin. One agent per pin directory at a time.
//
// Traps: the agent must run in the host network namespace (the one its
// proxy listens in); its own upstream sockets must carry Options.Mark
// (l7.Config.Mark) if it runs inside an attached cgroup; the proxy must
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
// used, by version: LRU hash and LPM trie maps
// (4.11), sockops and socket cookies in sock_addr programs (5.0),
// ctx->sk in sock_addr programs (5.3), bpf_get_netns_cookie in sock_addr
// programs and cgroup BPF links with BPF_LINK_UPDATE (5.7), and the two
// that set the floor: SO_NETNS_COOKIE to learn the host namespace's cookie
// and BPF_MAP_LOOKUP_AND_DELETE_ELEM on hash maps (5.14).
//
// Errors that callers may branch on wrap ErrNotRoot, ErrNoCgroupV2 or
// ErrUnsupported (BPF disabled or kernel too old; the message names what
// is missing).
package redirect
