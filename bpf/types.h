/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the programs and by Go. bpf2go generates a Go declaration
 * for each of them (bpf/gen.go names them with -type); keep every padding
 * byte explicit so both sides agree on the layout.
 *
 * Byte order: addresses are in network byte order (as the kernel hands them
 * over), ports in host byte order.
 */
#ifndef __VIGIL_TYPES_H__
#define __VIGIL_TYPES_H__

#define AF_INET 2
#define AF_INET6 10

/* Address family tags stored in keys and values: 4 or 6, never AF_*. */
#define FAMILY_V4 4
#define FAMILY_V6 6

/* origin.flags */
#define ORIGIN_F_V4MAPPED 1 /* the caller used ::ffff:a.b.c.d on an AF_INET6 socket */

/* Kernel counters, one slot each in the per-CPU stats array. */
enum stat_id {
	STAT_TCP_CONNECT = 0,	/* TCP connect()s seen */
	STAT_REDIRECTED,	/* TCP connect()s rewritten to the proxy */
	STAT_SKIP_MARK,		/* skipped: socket carries the bypass mark */
	STAT_SKIP_NOT_CAPTURED, /* skipped: destination outside the capture set, or the proxy port on loopback */
	STAT_OTHER_NETNS,	/* reported, not redirected: another network namespace */
	STAT_UDP_REPORTED,	/* UDP connect()/sendmsg() reported */
	STAT_MAP_FULL,		/* an origin could not be stored: let through unredirected */
	STAT_EVENTS_LOST,	/* ring buffer full: an event was dropped */
	STAT_ESTABLISHED,	/* redirected connections established (tuple entries written) */
	STAT_SKIP_EXEMPT,	/* skipped: the caller is the exempt process (the agent) */
	STAT_BOUND_DEVICE,	/* reported, not redirected: the socket is bound to a device */
	STAT_KERNEL_DENY,	/* refused in the kernel by the deny table (reported) */
	STAT_REDIRECTED_NETNS,	/* TCP connect()s from a served workload namespace rewritten to its proxy listener */
	STAT_MAX,
};

/* Kinds of ring buffer events. */
enum event_kind {
	EVENT_UDP_CONNECT = 1,
	EVENT_UDP_SENDMSG = 2,
	EVENT_OTHER_NETNS = 3,
	EVENT_MAP_FULL = 4,
	EVENT_MARK_BYPASS = 5,	/* TCP with the bypass mark from a process other than the exempt one */
	EVENT_BOUND_DEVICE = 6, /* TCP on a device-bound socket (SO_BINDTODEVICE) */
	EVENT_KERNEL_DENY = 7,	/* TCP connect() refused by the deny table */
};

/* What connect() meant to do, and who did it. Value of the origins and tuples maps. */
struct origin {
	__u32 dst_addr[4]; /* IPv4 in dst_addr[0], rest zero */
	__u64 cgroup_id;
	__u64 netns_cookie;
	__u64 socket_cookie;
	__u32 pid; /* thread-group id */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u16 dst_port;
	__u8 family; /* FAMILY_V4 or FAMILY_V6 (IPv4-mapped destinations are FAMILY_V4) */
	__u8 flags;  /* ORIGIN_F_* */
	char comm[16];
	__u32 _pad;
};

/*
 * The client's local address of a redirected connection: what the proxy
 * sees as RemoteAddr, in the network namespace the proxy accepted it in
 * (127.0.0.1:40000 can exist in many namespaces at once).
 */
struct tuple_key {
	__u64 netns_cookie; /* network namespace of the client socket */
	__u32 addr[4];	    /* IPv4 (also IPv4-mapped) in addr[0], rest zero */
	__u16 port;
	__u8 family; /* FAMILY_V4 or FAMILY_V6 */
	__u8 _pad;
	__u32 _pad2;
};

/*
 * LPM trie key. prefixlen counts the bits after itself: 32 for the family
 * word, then the address prefix. An IPv4 address sits in addr[0].
 */
struct capture_key {
	__u32 prefixlen;
	__u8 family; /* FAMILY_V4 or FAMILY_V6 */
	__u8 _pad[3];
	__u32 addr[4];
};

#define CAPTURE_MAX_RANGES 16

struct port_range {
	__u16 lo;
	__u16 hi;
};

/* Captured destination ports for one prefix: any of ranges[0..n). n == 0 captures nothing. */
struct capture_val {
	__u32 n;
	struct port_range ranges[CAPTURE_MAX_RANGES];
};

/*
 * Deny table: the part of the policy the kernel enforces alone. An LPM
 * trie keyed like the capture set (struct capture_key); the value of the
 * longest prefix containing the destination lists segments that are
 * tried in order. The first segment whose ports, uid and gid contain the
 * connection decides: deny refuses connect() with err, anything else
 * leaves the decision to the proxy. No segment matching means the same.
 */
#define DENY_MAX_SEGS 16
#define DENY_RULE_DEFAULT 0xffffffff /* deny_seg.rule of the policy's default */

struct deny_seg {
	__u32 uid_lo, uid_hi; /* inclusive */
	__u32 gid_lo, gid_hi; /* inclusive */
	__u16 port_lo, port_hi; /* inclusive, host byte order */
	__u32 rule;	      /* policy rule index, or DENY_RULE_DEFAULT */
	__u16 err;	      /* positive errno for connect() */
	__u8 deny;	      /* 1: refuse; 0: leave it to the proxy */
	__u8 _pad;
};

struct deny_val {
	__u32 gen; /* generation of the table this value belongs to */
	__u32 n;   /* segments in use */
	struct deny_seg segs[DENY_MAX_SEGS];
};

/* Key of the "already reported" set: one event per (socket, destination, kind). */
struct seen_key {
	__u64 socket_cookie;
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 kind; /* enum event_kind */
	__u32 _pad;
};

/* A ring buffer record. */
struct event {
	struct origin origin;
	__u32 src_addr[4]; /* local address when the socket is already bound, else zero */
	__u16 src_port;
	__u8 src_family; /* 0 when unknown */
	__u8 kind;	 /* enum event_kind */
	__u8 proto;	 /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
	__u16 deny_errno; /* EVENT_KERNEL_DENY: the errno connect() failed with */
	__u32 deny_rule;  /* EVENT_KERNEL_DENY: index of the policy rule, DENY_RULE_DEFAULT for the default */
	__u32 deny_gen;	  /* EVENT_KERNEL_DENY: generation of the deny table that decided */
};

#endif /* __VIGIL_TYPES_H__ */
