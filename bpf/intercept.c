//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * intercept.c is the one translation unit bpf2go compiles into
 * intercept_bpfel.o. The programs share every map and the load-time
 * configuration, so they live in one object: one set of maps to load, pin
 * and adopt, and no map replacement between objects. Each concern keeps its
 * own file:
 *
 *   types.h     structs and enums shared with Go
 *   maps.h      maps, configuration, counters
 *   connect.c   connect4/6, getpeername4/6, sendmsg4/6
 *   sockops.c   sockops, sock_release
 */

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_endian.h"

#include "maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Emit BTF for the types that reach Go only through the ring buffer. */
const struct event *_btf_event __attribute__((unused));
const enum event_kind *_btf_event_kind __attribute__((unused));

#include "connect.c"
#include "sockops.c"
