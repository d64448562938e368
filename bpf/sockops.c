//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sockops.c: the lifecycle of a redirected socket. Compiled as part of
 * intercept.c.
 *
 *   sockops
 *     TCP_CONNECT_CB          a redirected socket asks for state callbacks
 *     ACTIVE_ESTABLISHED_CB   copy its origin under the client's (netns,
 *                             family, local addr, port): the proxy finds it
 *                             from the accepted connection's remote address
 *                             and its listener's namespace
 *     STATE_CB -> TCP_CLOSE   delete the cookie entry, and the tuple entry
 *                             unless the client closed first (see
 *                             closed_by_client)
 *   cgroup/sock_release
 *     close() of a redirected socket deletes its cookie entry, so sockets
 *     that never connect (refused, unreachable) do not linger in the map.
 */

/*
 * local_tuple fills key with the socket's network namespace and local
 * address, IPv4-mapped unmapped.
 */
static __always_inline void local_tuple(struct tuple_key *key, struct bpf_sock_ops *skops)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->netns_cookie = bpf_get_netns_cookie(skops);
	key->port = (__u16)skops->local_port;
	if (skops->family == AF_INET) {
		key->family = FAMILY_V4;
		key->addr[0] = skops->local_ip4;
		return;
	}
	__u32 a0 = skops->local_ip6[0], a1 = skops->local_ip6[1];
	__u32 a2 = skops->local_ip6[2], a3 = skops->local_ip6[3];
	if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
		key->family = FAMILY_V4;
		key->addr[0] = a3;
		return;
	}
	key->family = FAMILY_V6;
	key->addr[0] = a0;
	key->addr[1] = a1;
	key->addr[2] = a2;
	key->addr[3] = a3;
}

/*
 * closed_by_client reports whether a socket reaching TCP_CLOSE from old_state
 * was closed gracefully by the client first (FIN_WAIT1/2, CLOSING: it turns
 * into a time-wait socket). Its connection may still sit in the proxy's
 * accept queue, so the tuple entry stays for Lookup, which deletes it. Any
 * other way to TCP_CLOSE (reset, failed connect, the proxy closing first)
 * deletes the tuple entry here.
 */
static __always_inline int closed_by_client(__u32 old_state)
{
	return old_state == BPF_TCP_FIN_WAIT1 || old_state == BPF_TCP_FIN_WAIT2 || old_state == BPF_TCP_CLOSING;
}

static __always_inline void want_state_cb(struct bpf_sock_ops *skops)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

SEC("sockops")
int vigil_sockops(struct bpf_sock_ops *skops)
{
	struct tuple_key key;
	struct origin *o;
	__u64 cookie;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_map_lookup_elem(&vigil_origins, &cookie))
			want_state_cb(skops);
		break;

	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		cookie = bpf_get_socket_cookie(skops);
		o = bpf_map_lookup_elem(&vigil_origins, &cookie);
		if (!o)
			break;
		local_tuple(&key, skops);
		if (bpf_map_update_elem(&vigil_tuples, &key, o, BPF_ANY)) {
			count(STAT_MAP_FULL);
			break;
		}
		count(STAT_ESTABLISHED);
		want_state_cb(skops);
		break;

	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_delete_elem(&vigil_origins, &cookie);
		if (closed_by_client(skops->args[0]))
			break;
		local_tuple(&key, skops);
		o = bpf_map_lookup_elem(&vigil_tuples, &key);
		/* Only our own entry: the tuple may already belong to a newer socket. */
		if (o && o->socket_cookie == cookie)
			bpf_map_delete_elem(&vigil_tuples, &key);
		break;
	}
	return 1;
}

SEC("cgroup/sock_release")
int vigil_release(struct bpf_sock *sk)
{
	__u64 cookie;

	if (sk->protocol != IPPROTO_TCP)
		return 1;
	cookie = bpf_get_socket_cookie(sk);
	bpf_map_delete_elem(&vigil_origins, &cookie);
	return 1;
}
