// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * egressd's datapath, default deny: in an attached cgroup only TCP and UDP
 * sockets can be created (sock_create); every TCP connect goes to the local
 * proxy, which is told where it was going (connect4/6 remember it on the
 * socket, sockops files it under the connection as the proxy will see it);
 * UDP leaves only as DNS to a named resolver or where the operator allowed
 * it (connect4/6 for connected sockets, sendmsg4/6 for the others).
 *
 * Entry points are thin; the decisions live in the static helpers below.
 * A sock_addr program returns VERDICT_ALLOW (the syscall proceeds, maybe
 * with a rewritten address) or VERDICT_REJECT (it fails with EPERM).
 *
 * Verifier: the programs load with CAP_BPF and CAP_NET_ADMIN alone (no
 * CAP_PERFMON), where Linux 6.1's verifier refuses a write narrower than 8
 * bytes into a stack slot holding a spilled register. So state is written
 * straight into map values (the socket's storage) rather than built in
 * stack structs and copied, and what is on the stack is written in 8-byte
 * words (see pair).
 */

#include "egressd.h"
#include <bpf/bpf_endian.h>

#define VERDICT_REJECT 0
#define VERDICT_ALLOW 1
/* Internal: the connect is to be rewritten to the proxy. */
#define VERDICT_REDIRECT 2
/* Internal: the connect is to be failed closed (see fail_closed4). */
#define VERDICT_FAIL_CLOSED 3
/* Internal: the common checks (first_checks) did not decide. */
#define VERDICT_UNDECIDED 4

#define INADDR_LOOPBACK 0x7f000001

/* Runtime settings: set by redirect.Attach on the CollectionSpec before
 * loading. New settings mean newly loaded programs, swapped in atomically. */
volatile const __u16 proxy_port = 15001;
volatile const __u64 host_netns_cookie = 0;  /* the agent's netns (SO_NETNS_COOKIE) */
volatile const __u32 node_ip4 = 0;           /* network order; 0: none */
volatile const __u32 node_ip6[4] = {};       /* network order; all zero: none */
/* Not a setting: how many counters this object writes. Being of type enum
 * counter, it also puts the enum into BTF for bpf2go's Go constants. */
volatile const enum counter counters_used = COUNTER_MAX;

char __license[] SEC("license") = "Dual BSD/GPL";

/*
 * Stack writes are 8 bytes wide, all of them (bpf TestStackSlotsOneWidth):
 * Linux 6.1's verifier without CAP_PERFMON refuses a narrower write into a
 * slot holding a spilled register, and clang shares slots between
 * variables. So keys and addresses on the stack are unions written by
 * their __u64 words (little-endian: the low half is the lower field).
 */
static __always_inline __u64 pair(__u32 lo, __u32 hi)
{
	return (__u64)lo | ((__u64)hi << 32);
}

/* An address on the stack, in the 16-byte form. */
union addr16 {
	__u32 w[4];
	__u64 d[2];
};

static __always_inline int is_v4mapped(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* set_v4mapped writes the v4-mapped form into a map value. */
static __always_inline void set_v4mapped(__u32 a[4], __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0xffff);
	a[3] = ip4;
}

/* v4mapped16 writes it into a stack address. */
static __always_inline void v4mapped16(union addr16 *a, __u32 ip4)
{
	a->d[0] = 0;
	a->d[1] = pair(bpf_htonl(0xffff), ip4);
}

static __always_inline int is_loopback(const __u32 a[4])
{
	if (is_v4mapped(a))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/* 0.0.0.0, :: and ::ffff:0.0.0.0 mean "this host": never a destination
 * the proxy should be asked to reach. */
static __always_inline int is_unspecified(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && (a[2] == 0 || a[2] == bpf_htonl(0xffff)) && a[3] == 0;
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

/* in_trie looks the address up in an LPM trie of struct lpm_key. */
static __always_inline int in_trie(void *trie, const __u32 a[4])
{
	union {
		struct lpm_key k;
		__u64 d[3];
	} key;
	__u8 *v;

	key.d[0] = pair(128, a[0]);
	key.d[1] = pair(a[1], a[2]);
	key.d[2] = pair(a[3], 0);
	v = bpf_map_lookup_elem(trie, &key);
	return v && *v;
}

static __always_inline int udp_allowed(const __u32 a[4], __u16 port)
{
	union {
		struct udp_key k;
		__u64 d[3];
	} key;
	__u8 *v;

	key.d[0] = pair(32 + 128, bpf_htonl((__u32)port << 16));
	key.d[1] = pair(a[0], a[1]);
	key.d[2] = pair(a[2], a[3]);
	v = bpf_map_lookup_elem(&udp_allow, &key);
	return v && *v;
}

/*
 * own_socket says whether the socket is one egressd registered (cookie in
 * own_socks); with consume, the registration is used up.
 */
static __always_inline int own_socket(struct bpf_sock_addr *ctx, int consume)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (!bpf_map_lookup_elem(&own_socks, &cookie))
		return 0;
	if (consume)
		bpf_map_delete_elem(&own_socks, &cookie);
	return 1;
}

/*
 * exempt_cgroup says whether the current task's cgroup, or one of its
 * ancestors, is in exempt_cgroups. Level 0 is the root (never exempt: it
 * would exempt everything); past the task's own level the helper returns 0.
 */
static __always_inline int exempt_cgroup(void)
{
	__u64 id;
	int level;

	/* Unrolled: a loop in the verifier's eyes (a back edge revisiting
	 * states) fails to load on Linux 6.1 without CAP_PERFMON. */
#pragma unroll
	for (level = 1; level <= MAX_CGROUP_LEVELS; level++) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (id == 0)
			return 0;
		if (bpf_map_lookup_elem(&exempt_cgroups, &id))
			return 1;
	}
	return 0;
}

/*
 * exempt returns why the destination is left alone whatever the protocol,
 * or COUNTER_MAX when the policy applies to it.
 */
static __always_inline enum counter exempt(const __u32 a[4])
{
	/* Loopback never leaves the host, so it is not egress. */
	if (is_loopback(a))
		return COUNTER_SKIP_LOOPBACK;
	/* Ranges the operator declared in-cluster (--exclude-cidr). */
	if (in_trie(&excluded, a))
		return COUNTER_SKIP_EXCLUDED;
	return COUNTER_MAX;
}

static __always_inline int udp_verdict(const __u32 a[4], __u16 port)
{
	/* QUIC (HTTP/3) would bypass the rules; refused whatever is
	 * allowed, clients fall back to TCP, which is redirected. */
	if (port == 443) {
		count(COUNTER_UDP_REFUSED);
		return VERDICT_REJECT;
	}
	if (port == 53 && in_trie(&resolvers, a)) {
		count(COUNTER_UDP_DNS);
		return VERDICT_ALLOW;
	}
	if (udp_allowed(a, port)) {
		count(COUNTER_UDP_ALLOWED);
		return VERDICT_ALLOW;
	}
	count(COUNTER_UDP_REFUSED);
	return VERDICT_REJECT;
}

/* first_checks is what connect and sendmsg decide first: egressd's own
 * upstream and resolver sockets (rewriting them would send the proxy's
 * traffic back to the proxy; consume: a connect uses the registration up,
 * see own_socket) and workloads the operator exempted (as if not attached)
 * are allowed, the unspecified address is refused, exempt destinations are
 * allowed; VERDICT_UNDECIDED otherwise. */
static __always_inline int first_checks(struct bpf_sock_addr *ctx, const __u32 a[4], int consume)
{
	enum counter why;

	if (own_socket(ctx, consume)) {
		count(COUNTER_SKIP_OWN);
		return VERDICT_ALLOW;
	}
	if (exempt_cgroup()) {
		count(COUNTER_SKIP_EXEMPT);
		return VERDICT_ALLOW;
	}
	if (is_unspecified(a)) {
		count(COUNTER_UNSPECIFIED);
		return VERDICT_REJECT;
	}
	why = exempt(a);
	if (why != COUNTER_MAX) {
		count(why);
		return VERDICT_ALLOW;
	}
	return VERDICT_UNDECIDED;
}

/* policy decides a connect: allow, reject, fail closed or redirect. */
static __always_inline int policy(struct bpf_sock_addr *ctx, const __u32 a[4], __u16 port)
{
	int tcp = ctx->type == SOCK_STREAM;
	int v = first_checks(ctx, a, 1);

	if (v != VERDICT_UNDECIDED)
		return v;
	if (ctx->type == SOCK_DGRAM && ctx->protocol == IPPROTO_UDP)
		return udp_verdict(a, port);
	/* Anything else but TCP (SCTP, or a socket made before the
	 * sock_create hook was attached) can't be tracked to the proxy:
	 * refuse it rather than let it bypass the proxy. (MPTCP is fine: its
	 * first subflow, a TCP socket, connects through these hooks.) */
	if (!tcp || ctx->protocol != IPPROTO_TCP)
		return VERDICT_FAIL_CLOSED;
	/* The proxy itself on the node address (a pod's connect already
	 * rewritten, or made to the proxy directly): the loop guard. Other
	 * ports of the node address are egress like any other. */
	if (port == proxy_port && is_node_addr(a)) {
		count(COUNTER_SKIP_PROXY);
		return VERDICT_ALLOW;
	}
	/* DNS over TCP to a named resolver opens nothing UDP/53 does not. */
	if (port == 53 && in_trie(&resolvers, a)) {
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

/* loopback6 points an IPv6 socket's connect at loopback: ::ffff:127.0.0.1
 * for a v4-mapped destination (an IPv4 connect through a dual-stack socket
 * stays IPv4), ::1 otherwise. */
static __always_inline void loopback6(struct bpf_sock_addr *ctx, int mapped)
{
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	if (mapped) {
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = bpf_htonl(INADDR_LOOPBACK);
	} else {
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
}

static __always_inline int fail_closed6(struct bpf_sock_addr *ctx, int mapped)
{
	loopback6(ctx, mapped);
	ctx->user_port = 0;
	count(COUNTER_FAIL_CLOSED);
	return VERDICT_ALLOW;
}

/* record remembers the original destination, and who connected, on the
 * socket until sockops knows the source port. */
static __always_inline int record(struct bpf_sock_addr *ctx, const __u32 a[4], __u16 port)
{
	struct bpf_sock *sk = ctx->sk;
	struct sock_state *st;

	if (!sk)
		return 0;
	st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	st->orig.addr[0] = a[0];
	st->orig.addr[1] = a[1];
	st->orig.addr[2] = a[2];
	st->orig.addr[3] = a[3];
	st->orig.port = port;
	st->orig.cgroup_id = bpf_get_current_cgroup_id();
	st->tracked = 0;
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	union addr16 a;
	__u32 target;
	int v;

	v4mapped16(&a, ctx->user_ip4);
	v = policy(ctx, a.w, port);
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

	if (!record(ctx, a.w, port))
		return fail_closed4(ctx); /* the proxy could not serve it */
	ctx->user_ip4 = target;
	ctx->user_port = bpf_htons(proxy_port);
	count(COUNTER_REDIRECTED);
	return VERDICT_ALLOW;
}

/* redirect6 rewrites an IPv6 socket's connect to the proxy; 0: there is
 * no proxy address for it. */
static __always_inline int redirect6(struct bpf_sock_addr *ctx, int mapped)
{
	if (in_host_netns(ctx)) {
		loopback6(ctx, mapped);
	} else if (mapped) {
		if (!node_ip4)
			return 0;
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = node_ip4;
	} else {
		if (!have_node_ip6())
			return 0;
		ctx->user_ip6[0] = node_ip6[0];
		ctx->user_ip6[1] = node_ip6[1];
		ctx->user_ip6[2] = node_ip6[2];
		ctx->user_ip6[3] = node_ip6[3];
	}
	ctx->user_port = bpf_htons(proxy_port);
	return 1;
}

static __always_inline int has_proxy6(struct bpf_sock_addr *ctx, int mapped)
{
	if (in_host_netns(ctx))
		return 1;
	return mapped ? node_ip4 != 0 : have_node_ip6();
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	union addr16 a;
	int v, mapped;

	a.d[0] = pair(ctx->user_ip6[0], ctx->user_ip6[1]);
	a.d[1] = pair(ctx->user_ip6[2], ctx->user_ip6[3]);
	mapped = is_v4mapped(a.w);
	v = policy(ctx, a.w, port);
	if (v == VERDICT_FAIL_CLOSED)
		return fail_closed6(ctx, mapped);
	if (v != VERDICT_REDIRECT)
		return v;

	if (!has_proxy6(ctx, mapped))
		return fail_closed6(ctx, mapped); /* a pod, and nowhere to send it */
	if (!record(ctx, a.w, port))
		return fail_closed6(ctx, mapped); /* the proxy could not serve it */
	redirect6(ctx, mapped);
	count(COUNTER_REDIRECTED);
	return VERDICT_ALLOW;
}

/* sendmsg hooks see datagrams sent with an address (sendto/sendmsg on
 * any UDP socket); connected sockets were decided at connect. */
static __always_inline int sendmsg_verdict(struct bpf_sock_addr *ctx, const __u32 a[4])
{
	int v = first_checks(ctx, a, 0);

	if (v != VERDICT_UNDECIDED)
		return v;
	return udp_verdict(a, bpf_ntohs(ctx->user_port));
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	union addr16 a;

	v4mapped16(&a, ctx->user_ip4);
	return sendmsg_verdict(ctx, a.w);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	union addr16 a;

	a.d[0] = pair(ctx->user_ip6[0], ctx->user_ip6[1]);
	a.d[1] = pair(ctx->user_ip6[2], ctx->user_ip6[3]);
	return sendmsg_verdict(ctx, a.w);
}

/*
 * sock_create: the allowlist of sockets a process in an attached cgroup
 * may create. The kernel runs it for AF_INET and AF_INET6 sockets made by
 * socket(2) (not for the kernel's own, such as MPTCP subflows), after the
 * protocol is resolved (0 reads as TCP or UDP); returning 0 fails the
 * call with EPERM.
 */
SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	__u32 type = sk->type, proto = sk->protocol;

	if (type == SOCK_STREAM && (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP))
		return 1;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		return 1;
	if (exempt_cgroup()) {
		count(COUNTER_SKIP_EXEMPT);
		return 1;
	}
	if (type == SOCK_RAW)
		count(COUNTER_SOCK_RAW);
	else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		count(COUNTER_SOCK_PING);
	else if (proto == IPPROTO_UDPLITE)
		count(COUNTER_SOCK_UDPLITE);
	else if (proto == IPPROTO_SCTP)
		count(COUNTER_SOCK_SCTP);
	else
		count(COUNTER_SOCK_OTHER);
	return 0;
}

/* fill_tuple writes the connection as the proxy will see it into t (a map
 * value). A v4-mapped IPv6 socket runs IPv4 underneath, and its IPv6
 * source address is only set after TCP_CONNECT_CB: read the IPv4 fields
 * for it. */
static __always_inline void fill_tuple(struct bpf_sock_ops *skops, struct tuple *t)
{
	__u32 r0 = skops->remote_ip6[0], r1 = skops->remote_ip6[1], r2 = skops->remote_ip6[2];

	if (skops->family == AF_INET || (r0 == 0 && r1 == 0 && r2 == bpf_htonl(0xffff))) {
		set_v4mapped(t->client_addr, skops->local_ip4);
		set_v4mapped(t->proxy_addr, skops->remote_ip4);
	} else {
		t->client_addr[0] = skops->local_ip6[0];
		t->client_addr[1] = skops->local_ip6[1];
		t->client_addr[2] = skops->local_ip6[2];
		t->client_addr[3] = skops->local_ip6[3];
		t->proxy_addr[0] = r0;
		t->proxy_addr[1] = r1;
		t->proxy_addr[2] = r2;
		t->proxy_addr[3] = skops->remote_ip6[3];
	}
	t->client_port = skops->local_port;           /* host order */
	t->proxy_port = bpf_ntohl(skops->remote_port); /* network order, high half */
}

/* track files a redirected socket's original destination under its
 * connection, right before its SYN, and asks to hear of its close. */
static __always_inline void track(struct bpf_sock_ops *skops, struct sock_state *st)
{
	fill_tuple(skops, &st->t);
	if (bpf_map_update_elem(&conn_origs, &st->t, &st->orig, BPF_ANY) != 0) {
		count(COUNTER_TRACK_FAILED);
		return;
	}
	st->tracked = 1;
	count(COUNTER_TRACKED);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* untrack removes the entry of a connection that closed before the proxy
 * took it (reset, refused, given up). */
static __always_inline void untrack(struct sock_state *st)
{
	if (!st->tracked)
		return;
	st->tracked = 0;
	if (bpf_map_delete_elem(&conn_origs, &st->t) == 0)
		count(COUNTER_UNTRACKED);
}

SEC("sockops")
int track_connect(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk;
	struct sock_state *st;
	__u32 op = skops->op;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB &&
	    !(op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE))
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st)
		return 1; /* not redirected */
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		track(skops, st);
	else
		untrack(st);
	return 1;
}
