// Package bpf holds the kernel side of vigil's connection interception: the
// C programs in this directory and the Go bindings bpf2go generates from
// them (intercept_bpfel.go, intercept_bpfel.o; both committed so that a
// plain go build needs no clang). Package
// github.com/vigil-ebpf/vigil/pkg/intercept loads and attaches them.
//
// Regenerate with `make generate`; scripts/check-generate.sh verifies that
// the committed output matches the sources byte for byte.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -I./headers" -type origin -type event -type tuple_key -type capture_key -type capture_val -type seen_key -type deny_seg -type deny_val -type stat_id -type event_kind Intercept intercept.c
