package host

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"ftvm/replog"
)

// Hello kinds: the first field of a connection's hello.
const (
	helloLog     = "log" // a backup dials its primary
	helloControl = "ctl" // ftvm failpoint and friends
	helloClone   = "cln" // a primary clones its VM onto a spare host
)

// cloneHello is what a primary running alone says when it dials a spare
// host to clone its VM there (see clone.go).
type cloneHello struct {
	VM      string
	Gen     uint64 // the generation the new pair will claim
	Primary string // the dialing host
}

func (h cloneHello) marshal() []byte {
	var e replog.Encoder
	e.String(helloClone)
	e.String(h.VM)
	e.Uint(h.Gen)
	e.String(h.Primary)
	return e.B
}

// logHello is what a backup says when it dials its primary's host.
type logHello struct {
	VM      string
	Gen     uint64
	Backup  string // the dialing host
	HaveSeq uint64 // the last entry the backup already has
}

func (h logHello) marshal() []byte {
	var e replog.Encoder
	e.String(helloLog)
	e.String(h.VM)
	e.Uint(h.Gen)
	e.String(h.Backup)
	e.Uint(h.HaveSeq)
	return e.B
}

// hello is a parsed hello: its kind and the fields of that kind.
type hello struct {
	kind  string
	log   logHello
	clone cloneHello
}

// parseHello parses a connection's hello.
func parseHello(b []byte) (hello, error) {
	d := replog.NewDecoder(b)
	h := hello{kind: d.String()}
	if err := d.Err(); err != nil {
		return hello{}, fmt.Errorf("hello: %w", err)
	}
	switch h.kind {
	case helloControl:
	case helloLog:
		h.log = logHello{VM: d.String(), Gen: d.Uint(), Backup: d.String(), HaveSeq: d.Uint()}
	case helloClone:
		h.clone = cloneHello{VM: d.String(), Gen: d.Uint(), Primary: d.String()}
	default:
		return hello{}, fmt.Errorf("hello: unknown kind %q", h.kind)
	}
	if err := d.Finish(); err != nil {
		return hello{}, fmt.Errorf("hello: %w", err)
	}
	return h, nil
}

func controlHello() []byte {
	var e replog.Encoder
	e.String(helloControl)
	return e.B
}

// A heartbeat is one UDP datagram from one host to another, for the VMs
// the two run as a pair (the host sends them all in one stream per peer,
// in as many datagrams as they need; see pulse.go):
//
//	"FTHB"   4 bytes
//	epoch    uvarint   the sender's start time (Unix ns): a restart is newer
//	counter  uvarint   increases with every datagram of this epoch
//	from     string    the sending host (uvarint length, bytes)
//	echo     uvarint ×2 the receiver's epoch and counter of the newest
//	                   heartbeat the sender had from it (0, 0: none)
//	vouch    uvarint   how long the sender's lease had to run when it sent
//	                   this, in ms (0: run out): the receiver's VMs listed
//	                   here may let outputs out until the echoed
//	                   heartbeat's send time plus this (see lease.go)
//	count    uvarint   how many VMs follow
//	count ×  vm string, gen uvarint: a VM, and the generation the sender
//	                   serves it in
//	tag      16 bytes  HMAC-SHA256(key, "ftvm heartbeat\x00" ‖ all of the above)
//
// The tag makes heartbeats unforgeable; the (epoch, counter) pair, which a
// receiver accepts only increasing per sender, makes a recorded one useless.
type heartbeat struct {
	Epoch, Counter uint64
	From           string
	// EchoEpoch and Echo name the receiver's newest heartbeat the sender
	// had when it sent this one.
	EchoEpoch, Echo uint64
	// Vouch is how long the sender's lease had to run, in ms.
	Vouch uint64
	VMs   []beatVM
}

// beatVM is one VM a heartbeat vouches for.
type beatVM struct {
	VM  string
	Gen uint64
}

const (
	hbMagic   = "FTHB"
	hbLabel   = "ftvm heartbeat\x00"
	hbTagSize = 16
	// maxDatagram bounds a heartbeat datagram: within an Ethernet
	// frame with its IP and UDP headers, so it is never fragmented.
	maxDatagram = 1400
)

var errHeartbeat = errors.New("bad heartbeat")

func hbTag(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(hbLabel))
	m.Write(body)
	return m.Sum(nil)[:hbTagSize]
}

func (h heartbeat) marshal(key []byte) []byte {
	var e replog.Encoder
	e.B = append(e.B, hbMagic...)
	e.Uint(h.Epoch)
	e.Uint(h.Counter)
	e.String(h.From)
	e.Uint(h.EchoEpoch)
	e.Uint(h.Echo)
	e.Uint(h.Vouch)
	e.Uint(uint64(len(h.VMs)))
	for _, v := range h.VMs {
		e.String(v.VM)
		e.Uint(v.Gen)
	}
	return append(e.B, hbTag(key, e.B)...)
}

// beatDatagrams splits the heartbeat of vms into datagrams of at most
// maxDatagram bytes, each with hb's header and its own counter from next.
func beatDatagrams(key []byte, hb heartbeat, next func() uint64, vms []beatVM) [][]byte {
	// The fixed part: magic, five uvarints and a count (at most 10 bytes
	// each), the sender's name and the tag.
	room := maxDatagram - len(hbMagic) - 6*10 - (10 + len(hb.From)) - hbTagSize
	var out [][]byte
	for len(vms) > 0 {
		n, size := 0, 0
		for n < len(vms) {
			s := 10 + len(vms[n].VM) + 10
			if n > 0 && size+s > room {
				break
			}
			size += s
			n++
		}
		hb.Counter, hb.VMs = next(), vms[:n]
		out = append(out, hb.marshal(key))
		vms = vms[n:]
	}
	return out
}

func parseHeartbeat(key, b []byte) (heartbeat, error) {
	if len(b) < len(hbMagic)+hbTagSize || string(b[:len(hbMagic)]) != hbMagic {
		return heartbeat{}, fmt.Errorf("%w: not a heartbeat", errHeartbeat)
	}
	body, tag := b[:len(b)-hbTagSize], b[len(b)-hbTagSize:]
	if !hmac.Equal(tag, hbTag(key, body)) {
		return heartbeat{}, fmt.Errorf("%w: tag does not verify", errHeartbeat)
	}
	d := replog.NewDecoder(body[len(hbMagic):])
	h := heartbeat{Epoch: d.Uint(), Counter: d.Uint(), From: d.String(), EchoEpoch: d.Uint(), Echo: d.Uint(), Vouch: d.Uint()}
	n := d.Uint()
	// Each VM takes two bytes at least: a count past that is a lie, and
	// allocating for it would let a peer with the key make this host
	// allocate without bound.
	if d.Err() == nil && n > uint64(len(body)/2) {
		return heartbeat{}, fmt.Errorf("%w: %d vms in %d bytes", errHeartbeat, n, len(body))
	}
	if n > 0 {
		h.VMs = make([]beatVM, 0, n)
	}
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		h.VMs = append(h.VMs, beatVM{VM: d.String(), Gen: d.Uint()})
	}
	if err := d.Finish(); err != nil {
		return heartbeat{}, fmt.Errorf("%w: %v", errHeartbeat, err)
	}
	return h, nil
}

// beatClock keeps, per sender, the newest (epoch, counter) seen, so a
// heartbeat replayed by someone on the network is ignored.
type beatClock map[string][2]uint64

func (c beatClock) fresh(h heartbeat) bool {
	last, ok := c[h.From]
	if ok && (h.Epoch < last[0] || (h.Epoch == last[0] && h.Counter <= last[1])) {
		return false
	}
	c[h.From] = [2]uint64{h.Epoch, h.Counter}
	return true
}
