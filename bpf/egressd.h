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

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* An original destination, as the application asked for it. */
struct orig_dst {
	__u32 addr[4];
	__u16 port;
	__u16 _pad;
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

/* Key of the excluded-CIDR trie: prefixlen counts bits of the 16-byte form
 * (an IPv4 /n is stored as /96+n). */
struct lpm_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* Indexes into the counters map. Append only: the map is pinned across
 * agent versions. */
enum counter {
	COUNTER_REDIRECTED = 0,   /* TCP connect rewritten to the proxy */
	COUNTER_SKIP_MARK,        /* socket carries egressd's mark */
	COUNTER_SKIP_LOOPBACK,    /* destination is loopback */
	COUNTER_SKIP_PROXY,       /* destination is the proxy's (node) address */
	COUNTER_SKIP_EXCLUDED,    /* destination in an excluded CIDR */
	COUNTER_SKIP_DNS,         /* TCP to port 53, allowed like UDP DNS */
	COUNTER_SKIP_OTHER,       /* not TCP nor UDP (raw, ping): not ours */
	COUNTER_UDP_ALLOWED,      /* UDP allowed (DNS, or any without DenyUDP) */
	COUNTER_UDP_REFUSED,      /* UDP refused (443 always, others with DenyUDP) */
	COUNTER_FAIL_CLOSED,      /* connect sent to loopback port 0 (refused): no
	                           * node address, non-TCP stream, map full */
	COUNTER_TRACKED,          /* sockops moved an entry to orig_dsts */
	COUNTER_TRACK_FAILED,     /* sockops could not store it (proxy will miss) */
	COUNTER_MAX,
};

/* Room left in counters for appended values without changing its size. */
#define COUNTERS_SIZE 32

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
 * pending: original destinations of redirected sockets whose source port
 * is not known yet.
 * Writer: the connect4/connect6 hooks. Reader and deleter: sockops at
 * TCP_CONNECT_CB. Entries of connects that fail before that are evicted
 * by the LRU.
 * Key: __u64 socket cookie. Value: struct orig_dst.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u64);
	__type(value, struct orig_dst);
} pending SEC(".maps");

/*
 * orig_dsts: original destinations of redirected connections, by the
 * connection as the proxy sees it.
 * Writer: sockops at TCP_CONNECT_CB. Reader and deleter:
 * redirect.Redirector.Lookup when the proxy accepts. Entries of
 * connections the proxy never accepts are evicted by the LRU.
 * Key: struct tuple. Value: struct orig_dst.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, struct tuple);
	__type(value, struct orig_dst);
} orig_dsts SEC(".maps");

/*
 * counters: what the hooks decided, per CPU.
 * Writer: every program. Reader: redirect.Redirector.Stats (sums CPUs).
 * Key: __u32 enum counter. Value: __u64 count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");
