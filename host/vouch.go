package host

import (
	"sync"
	"time"

	"ftvm/ft"
)

// A backup vouches for its primary. A primary cut off from the storage
// alone (its registry entry goes stale, so its own lease runs out) is not
// taken for lost while its backup is fresh in the registry: no host
// restarts a VM while a replica of it is alive there (lost, restart.go),
// and its backup takes over only through the logging channel's silence. So
// each heartbeat carries how long the sender's own lease has to run, and
// its receiver's primaries that the sender backs up in the generation the
// heartbeat names may let outputs out that long too (their vmm.Lease is
// backed by the host's). A cut primary goes on serving; a whole storage
// outage still fences every host, as it must.
//
// The grant is measured from a time the receiver knows to be earlier than
// the sender's: the send time of the receiver's own heartbeat that the
// sender echoes, which it had received before it sent. So a heartbeat that
// waited in a socket buffer (a receiver stopped for seconds) grants
// nothing past the sender's lease.

// beatRingSize is how many of its own heartbeat datagrams a host remembers
// the send time of: an echo older than that grants nothing.
const beatRingSize = 4096

// beatRing remembers when the host sent its recent heartbeat datagrams.
type beatRing struct {
	mu   sync.Mutex
	sent [beatRingSize]struct {
		counter uint64
		at      time.Time
	}
}

// note records that the datagram with counter was sent at.
func (r *beatRing) note(counter uint64, at time.Time) {
	r.mu.Lock()
	e := &r.sent[counter%beatRingSize]
	e.counter, e.at = counter, at
	r.mu.Unlock()
}

// sentAt returns when the datagram with counter was sent, if remembered.
func (r *beatRing) sentAt(counter uint64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.sent[counter%beatRingSize]
	if counter == 0 || e.counter != counter {
		return time.Time{}, false
	}
	return e.at, true
}

// vouchFor returns the header fields of a heartbeat to peer: the echo of
// the peer's newest heartbeat this host had, and how long this host's lease
// has to run (0 if it ran out).
func (h *Host) vouchFor(peer string, now time.Time) (echoEpoch, echo, vouch uint64) {
	if v, ok := h.beatFrom.Load(peer); ok {
		b := v.(beatSeen)
		echoEpoch, echo = b.epoch, b.counter
	}
	if h.lease.Valid() {
		vouch = uint64(max(h.lease.Expiry().Sub(now), 0) / time.Millisecond)
	}
	return echoEpoch, echo, vouch
}

// grantOf returns until when hb vouches for this host's primaries, if it
// does.
func (h *Host) grantOf(hb heartbeat) (time.Time, bool) {
	if hb.Vouch == 0 || hb.EchoEpoch != h.epoch {
		return time.Time{}, false
	}
	at, ok := h.sent.sentAt(hb.Echo)
	if !ok {
		return time.Time{}, false
	}
	return at.Add(time.Duration(hb.Vouch) * time.Millisecond), true
}

// vouched extends the lease of the runner's primary until, if from is its
// backup in generation gen.
func (r *runner) vouched(from string, gen uint64, until time.Time) {
	st := r.softState()
	if st.Peer != from || st.Gen != gen || st.Role != ft.Primary {
		return
	}
	if p := r.primarySide(); p != nil && p.lease != nil {
		p.lease.Extend(until)
	}
}
