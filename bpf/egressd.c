// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * egressd's redirection: cgroup connect hooks send every outbound TCP
 * connect to the local proxy and remember where it was going; sockops files
 * that memory under the connection as the proxy will see it; the connect
 * and sendmsg hooks keep UDP from becoming the bypass (QUIC refused).
 *
 * Entry points are thin; the decisions live in the static helpers below.
 * A sock_addr program returns VERDICT_ALLOW (the syscall proceeds, maybe
 * with a rewritten address) or VERDICT_REJECT (it fails with EPERM: used
 * for refused UDP).
 */

#include "egressd.h"
#include <bpf/bpf_endian.h>

#define VERDICT_REJECT 0
#define VERDICT_ALLOW 1
/* Internal: the connect is to be rewritten to the proxy. */
#define VERDICT_REDIRECT 2
/* Internal: the connect is to be failed closed (see fail_closed4). */
#define VERDICT_FAIL_CLOSED 3

#define INADDR_LOOPBACK 0x7f000001

/* Runtime settings: set by redirect.Attach on the CollectionSpec before
 * loading. New settings mean newly loaded programs, swapped in atomically. */
volatile const __u16 proxy_port = 15001;
volatile const __u32 sock_mark = 0;          /* 0: no socket is skipped by mark */
volatile const __u64 host_netns_cookie = 0;  /* the agent's netns (SO_NETNS_COOKIE) */
volatile const __u32 node_ip4 = 0;           /* network order; 0: none */
volatile const __u32 node_ip6[4] = {};       /* network order; all zero: none */
volatile const __u32 deny_udp = 0;           /* non-zero: refuse UDP but DNS */
/* Not a setting: how many counters this object writes. Being of type enum
 * counter, it also puts the enum into BTF for bpf2go's Go constants. */
volatile const enum counter counters_used = COUNTER_MAX;

char __license[] SEC("license") = "Dual BSD/GPL";

static __always_inline void count(enum counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	/* Per-CPU slot: no other CPU writes it. */
	if (v)
		*v += 1;
}

static __always_inline int is_v4mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline void set_v4mapped(__u32 a[4], __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0xffff);
	a[3] = ip4;
}

static __always_inline int is_loopback(const __u32 a[4])
{
	if (is_v4mapped(a))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

static __always_inline int have_node_ip6(void)
{
	return node_ip6[0] | node_ip6[1] | node_ip6[2] | node_ip6[3];
}

static __always_inline int is_node_addr(const __u32 a[4])
{
	if (is_v4mapped(a))
		return node_ip4 != 0 && a[3] == node_ip4;
	return have_node_ip6() && a[0] == node_ip6[0] && a[1] == node_ip6[1] &&
	       a[2] == node_ip6[2] && a[3] == node_ip6[3];
}

static __always_inline int is_excluded(const __u32 a[4])
{
	struct lpm_key key = { .prefixlen = 128 };
	__u8 *v;

	__builtin_memcpy(key.addr, a, sizeof(key.addr));
	v = bpf_map_lookup_elem(&excluded, &key);
	return v && *v;
}

/*
 * exempt returns why the destination is left alone whatever the protocol,
 * or COUNTER_MAX when the policy applies to it.
 */
static __always_inline enum counter exempt(struct bpf_sock_addr *ctx, const __u32 a[4])
{
	/* egressd's own upstream sockets carry its mark: rewriting them
	 * would send the proxy's traffic back to the proxy. */
	if (sock_mark && ctx->sk->mark == sock_mark)
		return COUNTER_SKIP_MARK;
	/* Loopback never leaves the host, so it is not egress. */
	if (is_loopback(a))
		return COUNTER_SKIP_LOOPBACK;
	/* The proxy's own (node) address: it already reaches the node, and
	 * rewriting a connect to the proxy itself would loop. */
	if (is_node_addr(a))
		return COUNTER_SKIP_PROXY;
	/* Ranges the operator declared in-cluster (--exclude-cidr). */
	if (is_excluded(a))
		return COUNTER_SKIP_EXCLUDED;
	return COUNTER_MAX;
}

static __always_inline int udp_verdict(__u16 port)
{
	/* DNS stays allowed: applications must resolve names. */
	if (port == 53) {
		count(COUNTER_UDP_ALLOWED);
		return VERDICT_ALLOW;
	}
	/* QUIC (HTTP/3) would bypass the rules; refused, clients fall back
	 * to TCP, which is redirected. Other UDP only with DenyUDP. */
	if (port == 443 || deny_udp) {
		count(COUNTER_UDP_REFUSED);
		return VERDICT_REJECT;
	}
	count(COUNTER_UDP_ALLOWED);
	return VERDICT_ALLOW;
}

/* policy decides a connect: allow, reject, or redirect. */
static __always_inline int policy(struct bpf_sock_addr *ctx, const __u32 a[4], __u16 port)
{
	enum counter why = exempt(ctx, a);

	if (why != COUNTER_MAX) {
		count(why);
		return VERDICT_ALLOW;
	}
	if (ctx->type == SOCK_DGRAM && ctx->protocol == IPPROTO_UDP)
		return udp_verdict(port);
	/* Raw, ping and other datagram sockets: not HTTP, not ours. */
	if (ctx->type != SOCK_STREAM) {
		count(COUNTER_SKIP_OTHER);
		return VERDICT_ALLOW;
	}
	/* Stream protocols other than TCP (SCTP) can't be tracked to the
	 * proxy: refuse them rather than let them bypass it. (MPTCP is fine:
	 * its first subflow, a TCP socket, connects through these hooks.) */
	if (ctx->protocol != IPPROTO_TCP)
		return VERDICT_FAIL_CLOSED;
	/* DNS over TCP (truncated answers) is allowed like UDP DNS; it opens
	 * nothing UDP/53 does not. */
	if (port == 53) {
		count(COUNTER_SKIP_DNS);
		return VERDICT_ALLOW;
	}
	return VERDICT_REDIRECT;
}

static __always_inline int in_host_netns(struct bpf_sock_addr *ctx)
{
	return bpf_get_netns_cookie(ctx) == host_netns_cookie;
}

/*
 * Fail closed: a connect that can't go to the proxy goes to port 0 on
 * loopback, where nothing can listen, and fails with ECONNREFUSED. It
 * never passes through unredirected.
 */
static __always_inline int fail_closed4(struct bpf_sock_addr *ctx)
{
	ctx->user_ip4 = bpf_htonl(INADDR_LOOPBACK);
	ctx->user_port = 0;
	count(COUNTER_FAIL_CLOSED);
	return VERDICT_ALLOW;
}

static __always_inline int fail_closed6(struct bpf_sock_addr *ctx, const __u32 a[4])
{
	__u32 lo[4] = { 0, 0, 0, bpf_htonl(1) };

	if (is_v4mapped(a))
		set_v4mapped(lo, bpf_htonl(INADDR_LOOPBACK));
	ctx->user_ip6[0] = lo[0];
	ctx->user_ip6[1] = lo[1];
	ctx->user_ip6[2] = lo[2];
	ctx->user_ip6[3] = lo[3];
	ctx->user_port = 0;
	count(COUNTER_FAIL_CLOSED);
	return VERDICT_ALLOW;
}

/* record remembers the original destination under the socket cookie until
 * sockops knows the source port. */
static __always_inline int record(struct bpf_sock_addr *ctx, const __u32 a[4], __u16 port)
{
	struct orig_dst orig = { .port = port };
	__u64 cookie = bpf_get_socket_cookie(ctx);

	__builtin_memcpy(orig.addr, a, sizeof(orig.addr));
	return bpf_map_update_elem(&pending, &cookie, &orig, BPF_ANY) == 0;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 a[4], target;
	int v;

	set_v4mapped(a, ctx->user_ip4);
	v = policy(ctx, a, port);
	if (v == VERDICT_FAIL_CLOSED)
		return fail_closed4(ctx);
	if (v != VERDICT_REDIRECT)
		return v;

	if (in_host_netns(ctx))
		target = bpf_htonl(INADDR_LOOPBACK);
	else if (node_ip4)
		target = node_ip4;
	else
		return fail_closed4(ctx); /* a pod, and nowhere to send it */

	if (!record(ctx, a, port))
		return fail_closed4(ctx); /* the proxy could not serve it */
	ctx->user_ip4 = target;
	ctx->user_port = bpf_htons(proxy_port);
	count(COUNTER_REDIRECTED);
	return VERDICT_ALLOW;
}

/* target6 picks the proxy address for an IPv6 socket; 0: none. */
static __always_inline int target6(struct bpf_sock_addr *ctx, const __u32 a[4], __u32 t[4])
{
	int mapped = is_v4mapped(a);

	if (in_host_netns(ctx)) {
		if (mapped) {
			set_v4mapped(t, bpf_htonl(INADDR_LOOPBACK));
		} else {
			t[0] = 0;
			t[1] = 0;
			t[2] = 0;
			t[3] = bpf_htonl(1);
		}
		return 1;
	}
	if (mapped) {
		set_v4mapped(t, node_ip4);
		return node_ip4 != 0;
	}
	t[0] = node_ip6[0];
	t[1] = node_ip6[1];
	t[2] = node_ip6[2];
	t[3] = node_ip6[3];
	return have_node_ip6();
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 a[4], t[4];
	int v;

	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	v = policy(ctx, a, port);
	if (v == VERDICT_FAIL_CLOSED)
		return fail_closed6(ctx, a);
	if (v != VERDICT_REDIRECT)
		return v;

	if (!target6(ctx, a, t))
		return fail_closed6(ctx, a); /* a pod, and nowhere to send it */
	if (!record(ctx, a, port))
		return fail_closed6(ctx, a); /* the proxy could not serve it */
	ctx->user_ip6[0] = t[0];
	ctx->user_ip6[1] = t[1];
	ctx->user_ip6[2] = t[2];
	ctx->user_ip6[3] = t[3];
	ctx->user_port = bpf_htons(proxy_port);
	count(COUNTER_REDIRECTED);
	return VERDICT_ALLOW;
}

/* sendmsg hooks see unconnected UDP (connected sockets were decided at
 * connect). */
static __always_inline int sendmsg_verdict(struct bpf_sock_addr *ctx, const __u32 a[4])
{
	enum counter why = exempt(ctx, a);

	if (why != COUNTER_MAX) {
		count(why);
		return VERDICT_ALLOW;
	}
	return udp_verdict(bpf_ntohs(ctx->user_port));
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	__u32 a[4];

	set_v4mapped(a, ctx->user_ip4);
	return sendmsg_verdict(ctx, a);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 a[4];

	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	return sendmsg_verdict(ctx, a);
}

/* tuple_of fills the connection as the proxy will see it. A v4-mapped
 * IPv6 socket runs IPv4 underneath, and its IPv6 source address is only
 * set after TCP_CONNECT_CB: read the IPv4 fields for it. */
static __always_inline void tuple_of(struct bpf_sock_ops *skops, struct tuple *t)
{
	__u32 remote6[4] = {
		skops->remote_ip6[0], skops->remote_ip6[1],
		skops->remote_ip6[2], skops->remote_ip6[3],
	};

	if (skops->family == AF_INET || is_v4mapped(remote6)) {
		set_v4mapped(t->client_addr, skops->local_ip4);
		set_v4mapped(t->proxy_addr, skops->remote_ip4);
	} else {
		t->client_addr[0] = skops->local_ip6[0];
		t->client_addr[1] = skops->local_ip6[1];
		t->client_addr[2] = skops->local_ip6[2];
		t->client_addr[3] = skops->local_ip6[3];
		__builtin_memcpy(t->proxy_addr, remote6, sizeof(remote6));
	}
	t->client_port = skops->local_port;           /* host order */
	t->proxy_port = bpf_ntohl(skops->remote_port); /* network order, high half */
}

/* track_connect runs right before the SYN of a connect, when the source port is
 * known: it moves a pending original destination to orig_dsts. */
SEC("sockops")
int track_connect(struct bpf_sock_ops *skops)
{
	struct orig_dst *pend, orig;
	struct tuple t = {};
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	pend = bpf_map_lookup_elem(&pending, &cookie);
	if (!pend)
		return 1; /* not redirected */
	orig = *pend;
	tuple_of(skops, &t);
	if (bpf_map_update_elem(&orig_dsts, &t, &orig, BPF_ANY) == 0)
		count(COUNTER_TRACKED);
	else
		count(COUNTER_TRACK_FAILED);
	bpf_map_delete_elem(&pending, &cookie);
	return 1;
}
