/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps and load-time configuration shared by every program of the object.
 * Lifetimes are described in docs/INTERCEPTION.md.
 */
#ifndef __VIGIL_MAPS_H__
#define __VIGIL_MAPS_H__

#include "types.h"

/* Set by the loader before the programs are verified (.rodata). */
volatile const __u16 cfg_proxy_port = 1015;   /* host byte order */
volatile const __u32 cfg_bypass_mark = 0x7669; /* SO_MARK of the agent's own dials */
volatile const __u64 cfg_netns_cookie = 0;     /* netns cookie of the agent */
volatile const __u32 cfg_exempt_pid = 0;       /* tgid never redirected nor reported (the agent); 0 = none */

/* Socket cookie -> origin, for every redirected socket until it is released or closed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct origin);
} vigil_origins SEC(".maps");

/* Client local (family, addr, port) -> origin, from established until the proxy looks it up or the client closes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple_key);
	__type(value, struct origin);
} vigil_tuples SEC(".maps");

/*
 * Served workload network namespaces: netns cookie -> 1 while the agent
 * holds proxy listeners on loopback inside that namespace. Connects from
 * these namespaces are redirected as on the host; from any other
 * namespace but the agent's they are reported (netns.bypass). Userspace
 * inserts an entry only after its listeners are bound and deletes it
 * before closing them. max_entries is set at load (Config.MaxNetns).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} vigil_netns SEC(".maps");

/* Capture set: longest prefix wins; its value lists the captured ports. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct capture_key);
	__type(value, struct capture_val);
} vigil_capture SEC(".maps");

/*
 * The deny table in force: slot 0 holds an LPM trie of struct deny_val
 * (one generation of the table), or nothing (deny nothing). Userspace fills a new trie completely, then swaps it into the
 * slot with one update, so a connect() sees either the whole old table or
 * the whole new one; the kernel frees the old one only after every
 * program that looked it up has finished.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, 4096);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct capture_key);
		__type(value, struct deny_val);
	});
} vigil_deny SEC(".maps");

/* The inner map's value type would otherwise reach BTF only as a forward declaration. */
const struct deny_val *_btf_deny_val __attribute__((unused));

/* (socket, destination, kind) already reported: UDP, mark.bypass, bound.device, netns.bypass. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct seen_key);
	__type(value, __u8);
} vigil_udp_seen SEC(".maps");

/* Events for userspace: what the kernel saw but did not redirect. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} vigil_events SEC(".maps");

/* Counters, indexed by enum stat_id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, enum stat_id);
	__type(value, __u64);
} vigil_stats SEC(".maps");

static __always_inline void count(enum stat_id id)
{
	enum stat_id key = id;
	__u64 *v = bpf_map_lookup_elem(&vigil_stats, &key);

	if (v)
		__sync_fetch_and_add(v, 1); /* per-CPU, but a preempting task may run the same program */
}

#endif /* __VIGIL_MAPS_H__ */
