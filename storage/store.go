package storage

import "context"

// Store is what ftvm keeps where every host can reach it: the arbiter's
// owner records (Claim, the test-and-set), the host registry, the VMs'
// specs and modules, the hosts' statuses of the VMs, the event history and
// the cluster key. Dir, a directory, is one; hosts, commands and clients
// use a Store, so that another backend can serve them.
//
// Every method may fail with an error wrapping ErrUnreachable when the
// store cannot be reached; such a failure says nothing about whether the
// operation happened (Claim is safe to retry).
type Store interface {
	// ClusterKey returns the key that authenticates hosts to each other,
	// creating it on first use.
	ClusterKey() ([]byte, error)

	// Claim atomically creates the owner record of generation
	// o.Generation of vm, and reports whether this caller won; either
	// way it returns the record now in place. Claiming again a
	// generation one owns reports a win.
	Claim(vm string, o Owner) (won bool, current Owner, err error)
	// Owner returns the owner record of generation gen of vm, if any.
	Owner(vm string, gen uint64) (Owner, bool, error)
	// Latest returns the owner record of vm's newest generation (ok
	// false if none has been claimed).
	Latest(vm string) (Owner, bool, error)

	// PutHost registers or refreshes a host; Hosts returns them, sorted
	// by name.
	PutHost(h HostInfo) error
	Hosts() ([]HostInfo, error)

	// PutVM stores a VM's spec and module; VM returns its spec (an error
	// matching fs.ErrNotExist if there is none), Module its module, VMs
	// the names of the stored VMs, sorted.
	PutVM(spec VMSpec, module []byte) error
	VM(name string) (VMSpec, error)
	Module(name string) ([]byte, error)
	VMs() ([]string, error)
	// VMsOnPort returns the names of the VMs whose spec has, or once had,
	// a listener on TCP port port (see ListenerPorts): a superset, which
	// the caller narrows by reading their specs, so that a start need not
	// read every VM's.
	VMsOnPort(port int) ([]string, error)
	// DiskDir returns the host path of a VM's shared virtual disk.
	DiskDir(vm string) string

	// PutStatus records a host's status of a VM; Statuses returns every
	// host's status of vm, sorted by host.
	PutStatus(st VMStatus) error
	Statuses(vm string) ([]VMStatus, error)
	// PutStatuses records several statuses at once (PutStatus for each,
	// in as few round trips as the backend allows).
	PutStatuses(sts []VMStatus) error

	// AppendEvent appends to the event history; Events returns it,
	// oldest first; EventsStamp returns a string that changes whenever
	// it does.
	AppendEvent(e Event) error
	// AppendEvents appends several, in order (AppendEvent for each, in
	// as few writes as the backend allows).
	AppendEvents(es []Event) error
	Events() ([]Event, error)
	EventsStamp() (string, error)

	// Unreadable returns the records that do not decode, each with the
	// reason (the listings skip them).
	Unreadable() ([]string, error)
	// SetReachable installs a check made before every operation: while it
	// returns false, every operation fails with ErrUnreachable (the
	// failpoint of an unreachable store).
	SetReachable(f func() bool)
}

// Watcher is a Store that can tell which VMs changed, so that hosts follow
// changes instead of rescanning.
type Watcher interface {
	// WatchVMs reports, until ctx ends, the names of the VMs whose spec or
	// owner records changed (a VM created, its spec written or removed, a
	// generation claimed), in batches, each name once per batch. A nil
	// batch means changes may have been missed (an overflow, a watch
	// restarted after an error): the caller looks at every VM. Changes
	// made after WatchVMs returned are reported; the channel is closed
	// when ctx ends.
	WatchVMs(ctx context.Context) (<-chan []string, error)
}

var (
	_ Store   = (*Dir)(nil)
	_ Watcher = (*Dir)(nil)
)
