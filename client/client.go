// Package client connects Go programs to the guests of ftvm VMs over
// sessions (package session): connections that survive the failover of
// the VM's primary, carrying every byte exactly once in each direction.
//
// Dial finds the VM's current primary in the cluster's shared storage,
// opens a session with the guest's listener there, and returns it as a
// net.Conn. When the primary fails, the connection resumes with the host
// that takes over: the program sees one unbroken stream.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"slices"
	"strings"
	"time"

	"ftvm/session"
	"ftvm/storage"
	"ftvm/storage/backend"
)

// Options tune Dial; the zero value is fine.
type Options struct {
	// Listener is the guest listener's address, as the VM's spec lists it
	// (ftvm start --listen), when the VM has several; "" for its only one.
	Listener string
	// Timeout is how long to keep trying to reach a host that opens or
	// resumes the session before giving up; 0 means session.DefaultTimeout.
	// It should not be shorter than the hosts' failure detection and
	// go-live, nor longer than their session timeout.
	Timeout time.Duration
	// Window bounds the input kept until the VM acknowledges it; 0 means
	// session.DefaultWindow.
	Window int
	// Dialer dials the TCP connections; nil means a net.Dialer.
	Dialer session.Dialer
	// Store says how to reach an etcd store (TLS, user), if the cluster
	// keeps its records in one.
	Store backend.Options
}

// Dial opens a session with the guest of VM vm in the cluster whose store
// is at shared: its shared directory, or its etcd cluster's etcd:// URL.
// ctx bounds the opening only. The result is a *session.ClientConn.
func Dial(ctx context.Context, shared, vm string, opts *Options) (net.Conn, error) {
	cfg, store, err := Config(shared, vm, opts)
	if err != nil {
		return nil, err
	}
	c, err := session.Dial(ctx, cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	// The session finds its server in the store until it ends.
	go func() {
		<-c.(*session.ClientConn).Done()
		store.Close()
	}()
	return c, nil
}

// Config returns the session configuration Dial uses: for session.Proxy,
// or a session.Dial of one's own. Its Resolve reads the store, which the
// caller closes (store) once no session uses the configuration any more.
func Config(shared, vm string, opts *Options) (cfg session.Config, store io.Closer, err error) {
	if opts == nil {
		opts = &Options{}
	}
	dir, closer, err := backend.Open(shared, opts.Store, false)
	if err != nil {
		return session.Config{}, nil, fmt.Errorf("client: %w", err)
	}
	defer func() {
		if err != nil {
			closer.Close()
		}
	}()
	spec, err := dir.VM(vm)
	if errors.Is(err, fs.ErrNotExist) {
		return session.Config{}, nil, fmt.Errorf("client: no VM %q in shared storage %s", vm, shared)
	}
	if err != nil {
		return session.Config{}, nil, fmt.Errorf("client: VM %q: %w", vm, err)
	}
	switch {
	case opts.Listener == "" && len(spec.Listeners) > 1:
		return session.Config{}, nil, fmt.Errorf("client: VM %q has %d listeners (%s): name one", vm, len(spec.Listeners), strings.Join(spec.Listeners, ", "))
	case opts.Listener != "" && !slices.Contains(spec.Listeners, opts.Listener):
		return session.Config{}, nil, fmt.Errorf("client: VM %q has no listener %q (it has %s)", vm, opts.Listener, strings.Join(spec.Listeners, ", "))
	case len(spec.Listeners) == 0:
		return session.Config{}, nil, fmt.Errorf("client: VM %q has no listener", vm)
	}
	return session.Config{
		Resolve: Resolver(dir, vm),
		Target:  Target(vm, opts.Listener),
		Timeout: opts.Timeout,
		Window:  opts.Window,
		Dialer:  opts.Dialer,
	}, closer, nil
}

// Target is the session target of VM vm's guest listener listener ("" for
// its only one), as the hosts read it: "VM" or "VM LISTENER".
func Target(vm, listener string) string {
	if listener == "" {
		return vm
	}
	return vm + " " + listener
}

// ParseTarget splits a session target into its VM and guest listener.
func ParseTarget(t string) (vm, listener string) {
	vm, listener, _ = strings.Cut(t, " ")
	return vm, listener
}

// ErrNoPrimary is matched by a resolution that found no host serving the
// VM: it has not started, or a failover is under way (Dial tries again).
var ErrNoPrimary = errors.New("client: no host serves the VM now")

// Resolver returns a function that says where VM vm's primary serves
// sessions now: the session address of the host that owns the VM's latest
// generation.
func Resolver(dir storage.Store, vm string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		if spec, err := dir.VM(vm); err == nil && spec.Stopped {
			return "", session.Refusal(fmt.Sprintf("VM %q is stopped", vm))
		}
		o, ok, err := dir.Latest(vm)
		if err != nil {
			return "", fmt.Errorf("client: VM %q: %w", vm, err)
		}
		if !ok {
			return "", fmt.Errorf("%w: VM %q has no primary yet", ErrNoPrimary, vm)
		}
		hosts, err := dir.Hosts()
		if err != nil {
			return "", fmt.Errorf("client: %w", err)
		}
		for _, h := range hosts {
			if h.Name == o.Host {
				if h.Sessions == "" {
					return "", fmt.Errorf("client: host %s serves no sessions (an older ftvm?)", h.Name)
				}
				return h.Sessions, nil
			}
		}
		return "", fmt.Errorf("%w: its primary %s is not in the registry", ErrNoPrimary, o.Host)
	}
}
