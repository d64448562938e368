// Package netns serves workloads that live in network namespaces of their
// own (Kubernetes pods, containers): it opens a namespace, runs code on an
// OS thread that has entered it (to bind a listener or dial from inside),
// and tracks which namespaces exist so that each is adopted when it
// appears and released when its last process and bind mount are gone.
//
// A socket belongs to the namespace of the thread that created it, for its
// whole life; the thread can leave right after. Do therefore enters the
// namespace on a locked OS thread of its own, runs the function, and
// returns to the original namespace before the thread is given back to the
// Go scheduler; a thread that cannot return is never given back (it exits
// with its goroutine).
package netns
