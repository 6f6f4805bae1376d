// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * The optional guards: programs that close a way around the hooks of
 * egressd.c, which egressd runs without where they cannot load, and says
 * so (redirect's guard.go). packet_guard needs more than those hooks;
 * source_route does not (it is written for 6.1's verifier without
 * CAP_PERFMON, like egressd.c).
 *
 * packet_guard: the socket families that no cgroup inet hook sees. A
 * packet socket (AF_PACKET, with CAP_NET_RAW) writes whole frames on the
 * process's interfaces, past connect, sendmsg and the IP output path where
 * egressd.c's programs run; so would AF_LLC, and other families reach
 * other hosts without IP (vsock, TIPC, RDS, CAN, Bluetooth...). In an
 * attached cgroup a process may create only the sockets it needs for IP
 * through egressd and for the host's local services: AF_UNIX, AF_NETLINK,
 * AF_INET and AF_INET6 (whose types and protocols egressd.c's sock_create
 * judges). The kernel's own sockets (kern) are left alone.
 *
 * An LSM program: lsm_cgroup (Linux 6.0), the bpf LSM active, and
 * CAP_PERFMON to load it. lsm_cgroup programs on a hook
 * without a socket argument run for the current task's cgroup. Return 0
 * refuses (EPERM), 1 lets the other LSMs decide.
 */
#include "counters.h"
#include <bpf/bpf_endian.h>

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_NETLINK 16
#define AF_PACKET 17

char __license[] SEC("license") = "Dual BSD/GPL";

/*
 * route_scratch: where source_route loads header bytes (a map value, not
 * the stack: see source_route). One slot per CPU; nothing persists.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} route_scratch SEC(".maps");


/* socket_create(int family, int type, int protocol, int kern) */
SEC("lsm_cgroup/socket_create")
int packet_guard(__u64 *ctx)
{
	int family = (int)ctx[0];
	int kern = (int)ctx[3];

	if (kern)
		return 1;
	switch (family) {
	case AF_UNIX:
	case AF_NETLINK:
	case AF_INET:
	case AF_INET6:
		return 1;
	case AF_PACKET:
		count(COUNTER_SOCK_PACKET);
		return 0;
	}
	count(COUNTER_SOCK_FAMILY);
	return 0;
}

/*
 * route_header looks at one IPv6 header type, next, at offset *off: 0 to
 * drop the packet (a routing header, or a header it cannot load), 1 to let
 * it go (the transport or another header that routes nothing), 2 when it
 * was a hop-by-hop or destination options header, whose next type it
 * loaded into next and whose end into *off.
 */
static __always_inline int route_header(struct __sk_buff *skb, __u64 *w, __u32 *off, __u32 *next)
{
	if (*next == 43) /* IPPROTO_ROUTING */
		return 0;
	if (*next != 0 && *next != 60) /* IPPROTO_HOPOPTS, IPPROTO_DSTOPTS */
		return 1;
	if (bpf_skb_load_bytes(skb, *off, w, 2) != 0)
		return 0;
	*next = *w & 0xff;
	*off += (((*w >> 8) & 0xff) + 1) * 8;
	return 2;
}

/*
 * source_route drops packets whose first hop is not the destination the
 * connect and sendmsg hooks judged. Without privileges a socket can carry
 * an IPv6 segment routing header (setsockopt IPV6_RTHDR, type 4), and with
 * CAP_NET_RAW IPv4 options (IP_OPTIONS, or IP_RETOPTS per sendmsg): the
 * kernel then routes the packet to the route's first address, with the
 * judged destination (a DNS server, the proxy) only its last. An IPv4
 * packet with any option, and an IPv6 packet with a routing header behind
 * at most two hop-by-hop or destination option headers (or more of them,
 * fail closed), are dropped; the sender sees EPERM.
 */
SEC("cgroup_skb/egress")
int source_route(struct __sk_buff *skb)
{
	/* The header bytes are loaded into a map value: on 6.1 without
	 * CAP_PERFMON a packet pointer may not move by a variable offset, and
	 * a helper writing part of a stack slot hit a verifier bug. */
	__u64 key = 0;
	__u64 *w = bpf_map_lookup_elem(&route_scratch, &key);
	__u32 off = 40, next;
	int verdict;

	if (!w)
		goto drop;
	if (skb->protocol == bpf_htons(0x0800)) { /* ETH_P_IP */
		if (bpf_skb_load_bytes(skb, 0, w, 1) == 0 && (*w & 0x0f) == 5)
			return 1;
		goto drop;
	}
	if (skb->protocol != bpf_htons(0x86dd)) /* ETH_P_IPV6 */
		return 1;
	if (bpf_skb_load_bytes(skb, 6, w, 1) != 0)
		goto drop;
	next = *w & 0xff;
	/* Three headers at most, written out: as a bounded loop (a back
	 * edge, its counter compared each round) Linux 6.1's verifier without
	 * CAP_PERFMON failed on it with EFAULT ("hit verifier bug"), as it
	 * did on egressd.c's ancestor walk, unrolled for the same reason.
	 * clang does not unroll this loop itself (it has several exits). */
	verdict = route_header(skb, w, &off, &next);
	if (verdict == 2)
		verdict = route_header(skb, w, &off, &next);
	if (verdict == 2)
		verdict = route_header(skb, w, &off, &next);
	if (verdict == 1)
		return 1;
drop:
	count(COUNTER_SOURCE_ROUTED);
	return 0;
}
