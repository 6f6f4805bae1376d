/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The counters map, shared by every egressd BPF object (egressd.c and
 * guard.c load it from the same pin), and count(), its only writer.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Indexes into the counters map. Append only: the map is pinned across
 * agent versions. */
enum counter {
	COUNTER_REDIRECTED = 0,   /* TCP connect rewritten to the proxy */
	COUNTER_SKIP_OWN,         /* one of egressd's own sockets (by cookie;
	                           * before: by mark) */
	COUNTER_SKIP_LOOPBACK,    /* destination is loopback */
	COUNTER_SKIP_PROXY,       /* destination is node address : proxy port */
	COUNTER_SKIP_EXCLUDED,    /* destination in an excluded CIDR */
	COUNTER_SKIP_DNS,         /* TCP to port 53 of a named resolver */
	COUNTER_SKIP_OTHER,       /* no longer written (other sockets are refused) */
	COUNTER_UDP_ALLOWED,      /* UDP allowed by the operator (allow-udp) */
	COUNTER_UDP_REFUSED,      /* UDP refused (443 always, others unless allowed) */
	COUNTER_FAIL_CLOSED,      /* connect sent to loopback port 0 (refused): no
	                           * node address, non-TCP stream, no storage */
	COUNTER_TRACKED,          /* sockops filed an original destination */
	COUNTER_TRACK_FAILED,     /* sockops could not store it (proxy will miss) */
	COUNTER_UDP_DNS,          /* UDP to port 53 of a named resolver */
	COUNTER_UNSPECIFIED,      /* connect/sendmsg to 0.0.0.0 or :: refused */
	COUNTER_SOCK_RAW,         /* socket creation refused: SOCK_RAW */
	COUNTER_SOCK_PING,        /* socket creation refused: ICMP datagram (ping) */
	COUNTER_SOCK_UDPLITE,     /* socket creation refused: UDP-Lite */
	COUNTER_SOCK_SCTP,        /* socket creation refused: SCTP */
	COUNTER_SOCK_OTHER,       /* socket creation refused: anything else */
	COUNTER_UNTRACKED,        /* a tracked connection closed before the
	                           * proxy looked it up: its entry removed */
	COUNTER_SKIP_EXEMPT,      /* connect, datagram or socket of an exempt
	                           * cgroup, let through as if not attached */
	COUNTER_SOURCE_ROUTED,    /* packet dropped: IPv4 options or an IPv6
	                           * routing header (a first hop the hooks never
	                           * saw) */
	COUNTER_SOCK_PACKET,      /* socket creation refused by packet_guard:
	                           * AF_PACKET */
	COUNTER_SOCK_FAMILY,      /* socket creation refused by packet_guard:
	                           * another family without inet hooks */
	COUNTER_MAX,
};

/* Room left in counters for appended values without changing its size. */
#define COUNTERS_SIZE 32

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

static __always_inline void count(enum counter c)
{
	__u64 key = c; /* counters' 4-byte key: the low half */
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	/* Per-CPU slot: no other CPU writes it. */
	if (v)
		*v += 1;
}
