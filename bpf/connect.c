//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * connect.c: the socket-address hooks. Compiled as part of intercept.c.
 *
 *   cgroup/connect4, cgroup/connect6
 *     TCP: record the origin under the socket cookie and rewrite the
 *     destination to the proxy (127.0.0.1, ::1 or ::ffff:127.0.0.1 at
 *     cfg_proxy_port), unless the caller is cfg_exempt_pid, the destination
 *     is not captured or is the proxy itself (the proxy port on a loopback
 *     or unspecified address), the socket carries the bypass mark (reported
 *     unless the caller is exempt), lives in a network namespace the agent
 *     does not serve or is bound to a device (both reported once per
 *     socket and destination, not redirected).
 *     A captured TCP connect() without the bypass mark is first looked up
 *     in the deny table (vigil_deny), whatever its namespace or device
 *     binding: a deny there fails connect() with the table's errno and is
 *     reported, and the proxy never sees it.
 *     UDP: report once per (socket, destination); never redirected.
 *   cgroup/getpeername4, cgroup/getpeername6
 *     A redirected socket's peer is its original destination.
 *   cgroup/sendmsg4, cgroup/sendmsg6
 *     UDP sendto()/sendmsg() with an address: report once per (socket,
 *     destination); never redirected.
 *
 * Every program returns 1, except a connect hook refusing a connection
 * the deny table denies (0, with the errno set by bpf_set_retval).
 */

#define LOOPBACK_V4 0x7f000001 /* 127.0.0.1 */

/* A destination as the caller gave it, IPv4-mapped IPv6 unmapped. */
struct dst {
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 mapped;
};

static __always_inline void dst_v4(struct dst *d, struct bpf_sock_addr *ctx)
{
	__builtin_memset(d, 0, sizeof(*d));
	d->family = FAMILY_V4;
	d->addr[0] = ctx->user_ip4;
	d->port = bpf_ntohs((__u16)ctx->user_port);
}

static __always_inline void dst_v6(struct dst *d, struct bpf_sock_addr *ctx)
{
	__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1];
	__u32 a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];

	__builtin_memset(d, 0, sizeof(*d));
	d->port = bpf_ntohs((__u16)ctx->user_port);
	if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
		d->family = FAMILY_V4;
		d->mapped = 1;
		d->addr[0] = a3;
		return;
	}
	d->family = FAMILY_V6;
	d->addr[0] = a0;
	d->addr[1] = a1;
	d->addr[2] = a2;
	d->addr[3] = a3;
}

/* exempt reports whether the caller is cfg_exempt_pid (the agent itself). */
static __always_inline int exempt(void)
{
	return cfg_exempt_pid != 0 && (__u32)(bpf_get_current_pid_tgid() >> 32) == cfg_exempt_pid;
}

/*
 * is_proxy reports whether d is the proxy itself: the proxy port on a
 * loopback (127.0.0.0/8, ::1; ::ffff:127.0.0.0/104 arrives unmapped) or
 * unspecified (0.0.0.0, ::) address. The proxy port elsewhere is an
 * ordinary destination.
 */
static __always_inline int is_proxy(const struct dst *d)
{
	if (d->port != cfg_proxy_port)
		return 0;
	if (d->family == FAMILY_V4)
		return d->addr[0] == 0 || (bpf_ntohl(d->addr[0]) >> 24) == 127;
	return d->addr[0] == 0 && d->addr[1] == 0 && d->addr[2] == 0 &&
	       (d->addr[3] == 0 || d->addr[3] == bpf_htonl(1));
}

/* captured reports whether the capture set covers d. */
static __always_inline int captured(const struct dst *d)
{
	struct capture_key key;
	struct capture_val *val;
	__u32 i, n;

	__builtin_memset(&key, 0, sizeof(key));
	key.family = d->family;
	key.prefixlen = 32 + (d->family == FAMILY_V4 ? 32 : 128);
	key.addr[0] = d->addr[0];
	key.addr[1] = d->addr[1];
	key.addr[2] = d->addr[2];
	key.addr[3] = d->addr[3];

	val = bpf_map_lookup_elem(&vigil_capture, &key);
	if (!val)
		return 0;
	n = val->n;
	for (i = 0; i < CAPTURE_MAX_RANGES; i++) {
		if (i >= n)
			break;
		if (d->port >= val->ranges[i].lo && d->port <= val->ranges[i].hi)
			return 1;
	}
	return 0;
}

static __always_inline void fill_origin(struct origin *o, struct bpf_sock_addr *ctx, const struct dst *d)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	__builtin_memset(o, 0, sizeof(*o));
	o->dst_addr[0] = d->addr[0];
	o->dst_addr[1] = d->addr[1];
	o->dst_addr[2] = d->addr[2];
	o->dst_addr[3] = d->addr[3];
	o->dst_port = d->port;
	o->family = d->family;
	o->flags = d->mapped ? ORIGIN_F_V4MAPPED : 0;
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->uid = (__u32)uid_gid;
	o->gid = uid_gid >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->netns_cookie = bpf_get_netns_cookie(ctx);
	o->socket_cookie = bpf_get_socket_cookie(ctx);
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/*
 * event_new reserves a ring buffer event and fills in what every kind
 * carries; the caller submits it. NULL when the ring buffer is full
 * (counted, never fatal).
 */
static __always_inline struct event *event_new(__u8 kind, __u8 proto, const struct origin *o, struct bpf_sock *sk)
{
	struct event *e;

	e = bpf_ringbuf_reserve(&vigil_events, sizeof(*e), 0);
	if (!e) {
		count(STAT_EVENTS_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	__builtin_memcpy(&e->origin, o, sizeof(*o));
	e->kind = kind;
	e->proto = proto;
	if (sk && sk->src_port) {
		e->src_port = sk->src_port;
		if (sk->family == AF_INET) {
			e->src_family = FAMILY_V4;
			e->src_addr[0] = sk->src_ip4;
		} else {
			e->src_family = FAMILY_V6;
			e->src_addr[0] = sk->src_ip6[0];
			e->src_addr[1] = sk->src_ip6[1];
			e->src_addr[2] = sk->src_ip6[2];
			e->src_addr[3] = sk->src_ip6[3];
		}
	}
	return e;
}

/* emit sends an event to userspace. */
static __always_inline void emit(__u8 kind, __u8 proto, const struct origin *o, struct bpf_sock *sk)
{
	struct event *e = event_new(kind, proto, o, sk);

	if (e)
		bpf_ringbuf_submit(e, 0);
}

/* first_report reports whether (socket, d, kind) has not been reported yet, and marks it reported. */
static __always_inline int first_report(struct bpf_sock_addr *ctx, const struct dst *d, __u8 kind)
{
	struct seen_key key;
	__u8 one = 1;

	__builtin_memset(&key, 0, sizeof(key));
	key.socket_cookie = bpf_get_socket_cookie(ctx);
	key.addr[0] = d->addr[0];
	key.addr[1] = d->addr[1];
	key.addr[2] = d->addr[2];
	key.addr[3] = d->addr[3];
	key.port = d->port;
	key.family = d->family;
	key.kind = kind;
	/* BPF_NOEXIST makes the check and the insert one step: only the first report wins. */
	return bpf_map_update_elem(&vigil_udp_seen, &key, &one, BPF_NOEXIST) == 0;
}

/* report_once emits a TCP event once per (socket, destination, kind). */
static __always_inline void report_once(struct bpf_sock_addr *ctx, const struct dst *d, __u8 kind)
{
	struct origin o;

	if (!first_report(ctx, d, kind))
		return;
	fill_origin(&o, ctx, d);
	emit(kind, IPPROTO_TCP, &o, ctx->sk);
}

/*
 * report_udp reports a captured UDP destination once per (socket,
 * destination, kind). The bypass mark silences it only while no exempt
 * process is configured: with one, the mark is no way to hide from audit.
 */
static __always_inline void report_udp(struct bpf_sock_addr *ctx, const struct dst *d, __u8 kind)
{
	struct bpf_sock *sk = ctx->sk;
	struct origin o;

	if (!sk || exempt() || (cfg_exempt_pid == 0 && sk->mark == cfg_bypass_mark) || !captured(d))
		return;
	if (!first_report(ctx, d, kind))
		return;

	fill_origin(&o, ctx, d);
	emit(kind, IPPROTO_UDP, &o, sk);
	count(STAT_UDP_REPORTED);
}

/*
 * kernel_deny looks the connection up in the deny table in force. On a
 * deny it sets connect()'s errno, reports the connection (rule index and
 * table generation included) and returns 1; the caller returns 0.
 */
static __always_inline int kernel_deny(const struct dst *d, const struct origin *o, struct bpf_sock *sk)
{
	struct capture_key key;
	struct deny_val *val;
	struct deny_seg *s;
	struct event *e;
	__u32 zero = 0;
	void *table;
	__u32 i, n;

	table = bpf_map_lookup_elem(&vigil_deny, &zero);
	if (!table)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	key.family = d->family;
	key.prefixlen = 32 + (d->family == FAMILY_V4 ? 32 : 128);
	key.addr[0] = d->addr[0];
	key.addr[1] = d->addr[1];
	key.addr[2] = d->addr[2];
	key.addr[3] = d->addr[3];
	val = bpf_map_lookup_elem(table, &key);
	if (!val)
		return 0;

	n = val->n;
	for (i = 0; i < DENY_MAX_SEGS; i++) {
		if (i >= n)
			return 0;
		s = &val->segs[i];
		if (d->port < s->port_lo || d->port > s->port_hi || o->uid < s->uid_lo || o->uid > s->uid_hi ||
		    o->gid < s->gid_lo || o->gid > s->gid_hi)
			continue;
		if (!s->deny)
			return 0;
		bpf_set_retval(-(int)s->err);
		count(STAT_KERNEL_DENY);
		e = event_new(EVENT_KERNEL_DENY, IPPROTO_TCP, o, sk);
		if (e) {
			e->deny_errno = s->err;
			e->deny_rule = s->rule;
			e->deny_gen = val->gen;
			bpf_ringbuf_submit(e, 0);
		}
		return 1;
	}
	return 0;
}

/*
 * redirect_tcp decides about a TCP connect() and records its origin. It
 * returns 1 when the caller must rewrite the destination to the proxy, -1
 * when the deny table refused the connection (connect() fails with the
 * errno it set), 0 to let it go on unchanged.
 */
static __always_inline int redirect_tcp(struct bpf_sock_addr *ctx, const struct dst *d)
{
	struct bpf_sock *sk = ctx->sk;
	struct origin o;
	__u64 cookie;
	int served = 0;

	count(STAT_TCP_CONNECT);
	if (!sk)
		return 0;
	if (exempt()) {
		/* The agent's own connections (proxy dials, KMS calls): never into its own proxy. */
		count(STAT_SKIP_EXEMPT);
		return 0;
	}
	if (is_proxy(d) || !captured(d)) {
		count(STAT_SKIP_NOT_CAPTURED);
		return 0;
	}
	if (sk->mark == cfg_bypass_mark) {
		/*
		 * Honoured (the proxy's dials carry it), but any process with
		 * CAP_NET_ADMIN can set it: once the agent is known, say so.
		 */
		if (cfg_exempt_pid != 0)
			report_once(ctx, d, EVENT_MARK_BYPASS);
		count(STAT_SKIP_MARK);
		return 0;
	}

	fill_origin(&o, ctx, d);
	/*
	 * Before the namespace and device checks: any user may bind a socket
	 * to a device (Linux 5.7+) and a pod may sit beyond the served
	 * namespaces, and neither may step around a kernel-enforced deny.
	 */
	if (kernel_deny(d, &o, sk))
		return -1;
	if (o.netns_cookie != cfg_netns_cookie) {
		/*
		 * Loopback is per namespace: redirect only where the agent
		 * holds a proxy listener (vigil_netns). Elsewhere report, do
		 * not break; the report also tells the agent to look for it.
		 */
		__u64 ns = o.netns_cookie;

		if (!bpf_map_lookup_elem(&vigil_netns, &ns)) {
			/* Once per (socket, destination): a busy namespace must not crowd kernel.deny out of the ring buffer. */
			if (first_report(ctx, d, EVENT_OTHER_NETNS))
				emit(EVENT_OTHER_NETNS, IPPROTO_TCP, &o, sk);
			count(STAT_OTHER_NETNS);
			return 0;
		}
		served = 1;
	}
	if (sk->bound_dev_if) {
		/* SO_BINDTODEVICE: the device cannot reach loopback. Report, do not break. */
		report_once(ctx, d, EVENT_BOUND_DEVICE);
		count(STAT_BOUND_DEVICE);
		return 0;
	}

	cookie = o.socket_cookie;
	if (bpf_map_update_elem(&vigil_origins, &cookie, &o, BPF_ANY)) {
		emit(EVENT_MAP_FULL, IPPROTO_TCP, &o, sk);
		count(STAT_MAP_FULL);
		return 0;
	}
	count(STAT_REDIRECTED);
	if (served)
		count(STAT_REDIRECTED_NETNS);
	return 1;
}

SEC("cgroup/connect4")
int vigil_connect4(struct bpf_sock_addr *ctx)
{
	struct dst d;

	dst_v4(&d, ctx);
	if (ctx->type == SOCK_DGRAM) {
		if (ctx->protocol == IPPROTO_UDP)
			report_udp(ctx, &d, EVENT_UDP_CONNECT);
		return 1;
	}
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;

	switch (redirect_tcp(ctx, &d)) {
	case -1:
		return 0;
	case 1:
		ctx->user_ip4 = bpf_htonl(LOOPBACK_V4);
		ctx->user_port = bpf_htons(cfg_proxy_port);
		break;
	}
	return 1;
}

SEC("cgroup/connect6")
int vigil_connect6(struct bpf_sock_addr *ctx)
{
	struct dst d;

	dst_v6(&d, ctx);
	if (ctx->type == SOCK_DGRAM) {
		if (ctx->protocol == IPPROTO_UDP)
			report_udp(ctx, &d, EVENT_UDP_CONNECT);
		return 1;
	}
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;

	switch (redirect_tcp(ctx, &d)) {
	case -1:
		return 0;
	case 1:
		if (d.mapped) {
			/* ::ffff:127.0.0.1: the socket keeps talking IPv4 */
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = bpf_htonl(0xffff);
			ctx->user_ip6[3] = bpf_htonl(LOOPBACK_V4);
		} else {
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = 0;
			ctx->user_ip6[3] = bpf_htonl(1);
		}
		ctx->user_port = bpf_htons(cfg_proxy_port);
		break;
	}
	return 1;
}

SEC("cgroup/getpeername4")
int vigil_peername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct origin *o = bpf_map_lookup_elem(&vigil_origins, &cookie);

	if (!o || o->family != FAMILY_V4)
		return 1;
	ctx->user_ip4 = o->dst_addr[0];
	ctx->user_port = bpf_htons(o->dst_port);
	return 1;
}

SEC("cgroup/getpeername6")
int vigil_peername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct origin *o = bpf_map_lookup_elem(&vigil_origins, &cookie);

	if (!o)
		return 1;
	if (o->family == FAMILY_V4) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = o->dst_addr[0];
	} else {
		ctx->user_ip6[0] = o->dst_addr[0];
		ctx->user_ip6[1] = o->dst_addr[1];
		ctx->user_ip6[2] = o->dst_addr[2];
		ctx->user_ip6[3] = o->dst_addr[3];
	}
	ctx->user_port = bpf_htons(o->dst_port);
	return 1;
}

SEC("cgroup/sendmsg4")
int vigil_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct dst d;

	if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
		return 1;
	dst_v4(&d, ctx);
	report_udp(ctx, &d, EVENT_UDP_SENDMSG);
	return 1;
}

SEC("cgroup/sendmsg6")
int vigil_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct dst d;

	if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP)
		return 1;
	dst_v6(&d, ctx);
	report_udp(ctx, &d, EVENT_UDP_SENDMSG);
	return 1;
}
