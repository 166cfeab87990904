package vmm

import (
	"sync"
	"sync/atomic"
	"time"
)

// Lease is a host's right to let its VMs' outputs and effects leave. A host
// that other hosts no longer see alive (its registry entry went stale, as
// under a long stall or a partition from the storage) may be taken for
// lost, and its VMs started again elsewhere from their disks; it must then
// be silent before they can run. So it holds a lease that each refresh of
// its registry entry renews, and every Gate it runs releases nothing once
// the lease has run out, until the host renews it and has made sure that
// no VM of its was started again meanwhile (see host's fencing). The
// expiry is checked where an output or effect is about to leave, against
// the monotonic clock: a timer that fires late cannot let one through.
//
// A nil *Lease never runs out (a VM run by ftvm exec, record or run).
//
// A lease may back another (Backed): one VM's lease, valid while the host's
// is or while its own grants last. A primary's backup that is still fresh
// in the registry grants its primary's VM such a lease through its
// heartbeats, since no host restarts a VM while a replica of it is alive
// in the registry: a primary cut off from the storage alone goes on serving.
type Lease struct {
	base time.Time
	// parent, if set, makes this lease valid while it is.
	parent *Lease
	// until is the expiry, in nanoseconds since base; 0 before the first
	// grant.
	until atomic.Int64

	mu    sync.Mutex
	gates map[*Gate]struct{} // woken when the lease is renewed
}

// NewLease returns a lease that has not been granted yet: Valid is false
// until the first Extend.
func NewLease() *Lease {
	return &Lease{base: time.Now(), gates: make(map[*Gate]struct{})}
}

// Backed returns a lease that is valid while l is, or while its own
// grants (Extend) last. The gates that use it are woken when either is
// renewed.
func (l *Lease) Backed() *Lease {
	return &Lease{base: l.base, parent: l, gates: make(map[*Gate]struct{})}
}

// Valid reports whether the lease has not run out.
func (l *Lease) Valid() bool {
	if l == nil {
		return true
	}
	until := l.until.Load()
	return until > 0 && int64(time.Since(l.base)) < until || l.parent != nil && l.parent.Valid()
}

// Granted reports whether the lease was ever extended (its own grants:
// not its parent's).
func (l *Lease) Granted() bool { return l != nil && l.until.Load() > 0 }

// Expiry returns when the lease's own grants run out (the zero time before
// its first grant).
func (l *Lease) Expiry() time.Time {
	until := l.until.Load()
	if until == 0 {
		return time.Time{}
	}
	return l.base.Add(time.Duration(until))
}

// Extend makes the lease run until t (never earlier than it did), and
// wakes the gates that hold outputs for want of it.
func (l *Lease) Extend(t time.Time) {
	until := max(int64(t.Sub(l.base)), 1)
	var old int64
	for {
		old = l.until.Load()
		if until <= old || l.until.CompareAndSwap(old, until) {
			break
		}
	}
	if old > 0 && old > int64(time.Since(l.base)) {
		// It had not run out: no gate found it so since the last
		// Extend woke them, and an idle VM's gate is not woken.
		return
	}
	l.mu.Lock()
	gates := make([]*Gate, 0, len(l.gates))
	for g := range l.gates {
		gates = append(gates, g)
	}
	l.mu.Unlock()
	for _, g := range gates {
		g.wake()
	}
}

// add registers g to be woken when the lease, or the lease backing it, is
// renewed.
func (l *Lease) add(g *Gate) {
	for ; l != nil; l = l.parent {
		l.mu.Lock()
		l.gates[g] = struct{}{}
		l.mu.Unlock()
	}
}

func (l *Lease) remove(g *Gate) {
	for ; l != nil; l = l.parent {
		l.mu.Lock()
		delete(l.gates, g)
		l.mu.Unlock()
	}
}
