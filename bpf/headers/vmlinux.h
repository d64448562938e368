/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one include point for kernel types. bpf/headers/update.sh dumps the
 * per-architecture headers; the programs only use UAPI context structs, which
 * do not differ between architectures, so the generic bpfel build uses the
 * x86 dump unless a target architecture is named.
 */
#ifndef __VIGIL_VMLINUX_H__
#define __VIGIL_VMLINUX_H__

#if defined(__TARGET_ARCH_arm) || defined(__TARGET_ARCH_arm64) ||         \
	defined(__TARGET_ARCH_loongarch) || defined(__TARGET_ARCH_mips) ||  \
	defined(__TARGET_ARCH_powerpc) || defined(__TARGET_ARCH_riscv) ||   \
	defined(__TARGET_ARCH_s390)
#error "no vmlinux.h vendored for this architecture: run bpf/headers/update.sh on it"
#else
#include "x86/vmlinux.h"
#endif

#endif /* __VIGIL_VMLINUX_H__ */
