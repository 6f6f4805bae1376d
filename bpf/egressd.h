/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types and maps shared by the egressd BPF programs (egressd.c) and, through
 * bpf2go's generated Go types, by the redirect package.
 *
 * Addresses are always 16 bytes in network byte order: IPv6 as is, IPv4 as
 * the v4-mapped form ::ffff:a.b.c.d (Go's netip.Addr.As16). One form for
 * both families keeps one code path, one LPM trie and v4-mapped IPv6
 * sockets equal to IPv4 ones. Ports are in host byte order.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "counters.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define IPPROTO_UDPLITE 136
#define IPPROTO_MPTCP 262

/* An original destination, as the application asked for it, and the
 * cgroup (v2 ID) of the process that connected. */
struct orig_dst {
	__u32 addr[4];
	__u64 cgroup_id;
	__u16 port;
	__u16 _pad[3];
};

/*
 * A redirected connection as the proxy sees it once accepted: the client's
 * address and port (its local side), and the proxy address and port it was
 * sent to. The kernel never has two live connections with the same pair, so
 * this names one connection across network namespaces.
 */
struct tuple {
	__u32 client_addr[4];
	__u32 proxy_addr[4];
	__u16 client_port;
	__u16 proxy_port;
};

/* What a redirected socket carries (socket-local storage) from its connect
 * to its close. */
struct sock_state {
	struct orig_dst orig;
	struct tuple t;
	__u32 tracked; /* 1: conn_origs holds t */
};

/* Key of the excluded and resolvers tries: prefixlen counts bits of the
 * 16-byte form (an IPv4 /n is stored as /96+n). */
struct lpm_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Key of the udp_allow trie: the port first (network order, in the high
 * half of the word: the low half is zero), then the address, so that a
 * prefix of 32 bits is "this port, any address" and 32+128 one address. */
struct udp_key {
	__u32 prefixlen;
	__u32 port;
	__u32 addr[4];
};


/*
 * excluded: destinations that are never redirected (cluster pod and
 * service ranges from --exclude-cidr).
 * Writer: redirect.Attach, filled before the programs are attached; not
 * pinned, so each agent start attaches programs together with its own set.
 * Reader: the connect and sendmsg hooks.
 * Key: struct lpm_key. Value: __u8, 1: excluded; 0: not excluded (the
 * v4-mapped range ::ffff:0:0/96 holds 0 unless IPv4 0.0.0.0/0 is
 * excluded, so an IPv6 prefix like ::/0 never covers IPv4).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct lpm_key);
	__type(value, __u8);
} excluded SEC(".maps");

/*
 * resolvers: the DNS servers pods may reach on port 53 (--dns-server).
 * Writer: redirect.Attach, like excluded. Reader: the connect and sendmsg
 * hooks, for port 53 only. Key: struct lpm_key. Value: __u8, 1: a resolver;
 * 0: not (the v4-mapped guard, as in excluded).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 256);
	__type(key, struct lpm_key);
	__type(value, __u8);
} resolvers SEC(".maps");

/*
 * udp_allow: the UDP destinations the operator allowed (--allow-udp).
 * Writer: redirect.Attach, like excluded. Reader: the connect and sendmsg
 * hooks. Key: struct udp_key. Value: __u8, 1: allowed; 0: not (guards).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct udp_key);
	__type(value, __u8);
} udp_allow SEC(".maps");

/*
 * sock_states: the original destination of each redirected socket, stored
 * on the socket itself: it lives and dies with the socket, so no other
 * socket's churn can evict it.
 * Writer: the connect hooks (create). Reader and writer: sockops at
 * TCP_CONNECT_CB (files it in conn_origs) and at the move to TCP_CLOSE
 * (removes that entry if the proxy has not taken it).
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/*
 * conn_origs: original destinations of redirected connections, by the
 * connection as the proxy sees it.
 * Writer: sockops at TCP_CONNECT_CB. Deleters: redirect.Redirector.Lookup
 * when the proxy accepts, and sockops when the connection closes first. A
 * plain hash, not an LRU: an entry is never evicted for another; it is
 * there exactly while its connection lives and the proxy has not read it.
 * Key: struct tuple. Value: struct orig_dst.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, struct tuple);
	__type(value, struct orig_dst);
} conn_origs SEC(".maps");

/*
 * own_socks: egressd's own sockets about to connect, which the hooks leave
 * alone (its upstream and resolver sockets; the agent may run inside an
 * attached cgroup).
 * Writer: the agent (redirect.Redirector.Control, before connect). Deleter:
 * the connect hooks, when they let the socket through (one connect per
 * registration); the LRU bounds what sockets that never connect leave.
 * Key: __u64 socket cookie. Value: __u8 1.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u64);
	__type(value, __u8);
} own_socks SEC(".maps");

/*
 * exempt_cgroups: cgroups whose processes the programs leave alone, as if
 * they were not attached: no redirect, no refusal (--exempt-cgroup, the
 * agent's own cgroup, exempt pods on Kubernetes). An entry covers the
 * cgroup's whole subtree: the hooks look up the current task's cgroup and
 * each of its ancestors (up to MAX_CGROUP_LEVELS below the root), so a
 * container created later in an exempt pod's cgroup is exempt from its
 * first connect.
 * Writer: the agent (redirect.Redirector's exempt set), the only one.
 * Reader: the connect, sendmsg and sock_create hooks. Pinned: a new agent
 * finds the entries of the previous one and reconciles them, so an exempt
 * workload is never redirected during a hand-over.
 * Key: __u64 cgroup v2 ID (the directory's inode number). Value: __u8
 * bitmask of reasons (redirect.ExemptReason), never 0.
 */
#define MAX_CGROUP_LEVELS 16
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u64);
	__type(value, __u8);
} exempt_cgroups SEC(".maps");

