package host

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// The pulse is what a host does on a timer for all its VMs at once, so
// that an idle VM costs nothing of its own (no goroutine wakes for it):
//
//   - Heartbeats go per peer host, not per VM: every heartbeat interval,
//     one stream of datagrams to each peer lists the VMs the two run as a
//     pair (see wire.go), each with its generation. A VM whose runner is
//     stuck (busy with one turn for more than stuckAfter) is left out, so
//     its peer still finds it failed: failure detection keeps its meaning
//     per VM.
//   - Heartbeats received are noted in each runner (heardAt), not handed
//     to it: its node, with ft.Config.HostHeartbeats, needs to run only at
//     its peer's timeout, and then only if the peer was not heard within
//     it since (ft.Node.SilenceTimeout). The pulse wakes each runner at its
//     node's deadline, sleeping until the earliest one.
//
// So an idle host wakes once per heartbeat interval, whatever its number
// of VMs, and a runner wakes when something happens to its VM.

// stuckAfter is how long a runner may take over one turn of its node
// before its VM is left out of the heartbeats.
const stuckAfter = 2

// pulse holds the state of a host's pulse loop.
type pulse struct {
	// resched wakes the loop to look at the deadlines again: a runner's
	// came nearer than the loop's planned wake-up (at).
	resched chan struct{}
	at      atomic.Int64 // when the loop next wakes, Unix ns
}

// deadlineChanged tells the pulse that a runner's deadline is now next
// (Unix ns, 0 for none).
func (h *Host) deadlineChanged(next int64) {
	if next != 0 && next < h.pulse.at.Load() {
		select {
		case h.pulse.resched <- struct{}{}:
		default:
		}
	}
}

// pulseLoop sends the heartbeats and wakes the runners whose deadlines
// came, until ctx is done.
func (h *Host) pulseLoop(ctx context.Context) {
	interval := h.cfg.Node.HeartbeatInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	nextBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-h.pulse.resched:
		}
		now := time.Now()
		runners := h.allRunners()
		if !now.Before(nextBeat) {
			h.sendBeats(runners, now)
			nextBeat = now.Add(interval)
		}
		// A runner whose deadline changes while the loop looks compares it
		// with the latest the loop may wake at.
		h.pulse.at.Store(nextBeat.UnixNano())
		wake := nextBeat
		for _, r := range runners {
			if d := r.due(now); !d.IsZero() && d.Before(wake) {
				wake = d
			}
		}
		h.pulse.at.Store(wake.UnixNano())
		timer.Reset(max(time.Until(wake), 0))
	}
}

// due wakes the runner if its node's deadline came, and returns its next
// deadline as the pulse sees it (zero for none): its node's, or, while the
// node waits only for the peer's timeout and the peer was heard since,
// the timeout counted from that.
func (r *runner) due(now time.Time) time.Time {
	if r.finished() {
		return time.Time{}
	}
	next := r.next.Load()
	if next == 0 {
		return time.Time{}
	}
	if r.lazy.Load() {
		// The node's own deadline counts from when it last heard the
		// peer as far as it knows; the pulse knows better.
		if d := r.heardAt.Load() + r.silence.Load(); d > next {
			next = d
		}
	}
	if now.UnixNano() < next {
		return time.Unix(0, next)
	}
	r.poke()
	return time.Time{} // it publishes a new one once it ran
}

// poke wakes the runner's node without an event.
func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// sendBeats sends each peer host the heartbeat of the VMs it runs with
// this host.
func (h *Host) sendBeats(runners []*runner, now time.Time) {
	stuck := now.Add(-stuckAfter * h.cfg.Node.HeartbeatInterval).UnixNano()
	byPeer := map[string][]beatVM{}
	for _, r := range runners {
		if r.finished() || !r.beating.Load() {
			continue
		}
		if b := r.busySince.Load(); b != 0 && b < stuck {
			continue
		}
		st := r.softState()
		if st.Peer != "" {
			byPeer[st.Peer] = append(byPeer[st.Peer], beatVM{VM: r.vm, Gen: st.Gen})
		}
	}
	for peer, vms := range byPeer {
		if h.fp.BeatCut(peer) {
			continue
		}
		p, ok := h.peer(peer)
		if !ok || p.Heartbeat == "" {
			// A host that registered since the registry was last read:
			// read it now rather than at the next refresh.
			h.readHosts()
			continue
		}
		addr, err := net.ResolveUDPAddr("udp", p.Heartbeat)
		if err != nil {
			continue
		}
		hb := heartbeat{Epoch: h.epoch, From: h.cfg.Name}
		hb.EchoEpoch, hb.Echo, hb.Vouch = h.vouchFor(peer, now)
		for _, b := range beatDatagrams(h.key, hb, h.nextBeat, vms) {
			_, _ = h.udp.WriteToUDP(b, addr)
		}
	}
}

// nextBeat numbers a heartbeat datagram about to leave, and remembers when
// it left, for the echo of it that grants a lease (vouch.go).
func (h *Host) nextBeat() uint64 {
	c := h.beats.Add(1)
	h.sent.note(c, time.Now())
	return c
}

// readHosts asks discovery to read the registry now.
func (h *Host) readHosts() {
	select {
	case h.hostsNow <- struct{}{}:
	default:
	}
}
