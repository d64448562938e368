package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Source is how connections accepted on one extra listener are resolved
// and dialed. A listener inside a workload's network namespace looks its
// connections up with that namespace's cookie (the same client address
// can exist in many namespaces) and dials from inside the namespace, so
// that routing and the source address are the workload's own.
type Source struct {
	// Resolver looks up connections accepted on this listener; nil uses
	// Config.Resolver.
	Resolver Resolver
	// Within runs fn, which dials the original destination, where this
	// listener's connections must be dialed from (for example on a thread
	// inside the listener's network namespace); nil dials in place.
	Within func(fn func() error) error
	// Attrs are added to every entry recorded for this listener's
	// connections (for example the namespace's inode).
	Attrs map[string]string
}

// ListenConfig is how the proxy configures its own listening sockets
// (keepalive, receive buffer, inherited by accepted sockets). Listeners
// bound elsewhere for AddListener (inside another network namespace)
// should use it too.
func ListenConfig() net.ListenConfig { return listenConfig() }

// extraListener is a listener added with AddListener.
type extraListener struct {
	ln      *net.TCPListener
	src     Source
	removed chan struct{} // closed by RemoveListener
}

// AddListener serves ln with src until RemoveListener or the proxy stops;
// it may be called before or during Serve. The proxy owns ln from now on:
// RemoveListener and Shutdown close it.
func (p *Proxy) AddListener(ln *net.TCPListener, src Source) error {
	el := &extraListener{ln: ln, src: src, removed: make(chan struct{})}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	if p.extra == nil {
		p.extra = make(map[*net.TCPListener]*extraListener)
	}
	if _, dup := p.extra[ln]; dup {
		p.mu.Unlock()
		return fmt.Errorf("proxy: listener %s added twice", ln.Addr())
	}
	p.extra[ln] = el
	start := p.startLoop
	if start != nil {
		p.acceptWG.Add(1)
	}
	p.mu.Unlock()
	if start != nil {
		start(el)
	}
	p.log.Debug("listener added", "addr", ln.Addr(), "attrs", src.Attrs)
	return nil
}

// RemoveListener stops accepting on ln and closes it. Connections already
// accepted on it run to their end.
func (p *Proxy) RemoveListener(ln *net.TCPListener) error {
	p.mu.Lock()
	el, ok := p.extra[ln]
	delete(p.extra, ln)
	p.mu.Unlock()
	if !ok {
		return errors.New("proxy: remove listener: not added")
	}
	close(el.removed)
	return ln.Close()
}

// Listeners counts the listeners accepting now: those of Config.Listen
// (until Shutdown) and those added with AddListener.
func (p *Proxy) Listeners() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return len(p.extra)
	}
	return len(p.lns) + len(p.extra)
}

// resolverFor returns src's resolver, or Config.Resolver.
func (p *Proxy) resolverFor(src *Source) Resolver {
	if src != nil && src.Resolver != nil {
		return src.Resolver
	}
	return p.cfg.Resolver
}

// dialFor dials dst as src says (inside its namespace), or in place.
func (p *Proxy) dialFor(ctx context.Context, src *Source, dst netip.AddrPort) (*net.TCPConn, error) {
	if src == nil || src.Within == nil {
		return p.dial(ctx, dst)
	}
	select {
	case p.withinSlots <- struct{}{}:
		defer func() { <-p.withinSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var c *net.TCPConn
	err := src.Within(func() error {
		var err error
		c, err = p.dial(ctx, dst)
		return err
	})
	if err != nil && c != nil {
		// Dialed, but the caller's thread could not be put back: still a
		// working connection.
		return c, nil
	}
	return c, err
}
