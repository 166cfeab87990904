package wasi

import (
	"encoding/binary"
	"fmt"
)

// poll_oneoff and sched_yield. poll_oneoff hands the whole subscription
// list, with descriptors replaced by Host handles, to Host.Poll, which
// blocks as long as needed; the events it returns are an input.

const (
	subscriptionSize = 48
	eventSize        = 32
)

func (s *System) pollOneoff(c *call) (Errno, error) {
	in, out, nsubs, nOut := c.u32(0), c.u32(1), c.u32(2), c.u32(3)
	if nsubs == 0 {
		return EINVAL, nil
	}
	if uint64(nsubs)*subscriptionSize > uint64(c.mem.Size()) ||
		!inRange(c.mem, in, nsubs*subscriptionSize) ||
		!inRange(c.mem, out, nsubs*eventSize) || !inRange(c.mem, nOut, 4) {
		return EFAULT, nil
	}
	raw, _ := c.mem.Read(in, nsubs*subscriptionSize)
	var subs []Subscription
	var ready []Event // subscriptions that fail without asking the Host
	// The connections whose fd_write events grant credit, by userdata; nil
	// where the userdata names no connection, or several descriptors (no
	// credit then).
	var writers map[uint64]*descriptor
	for i := range nsubs {
		b := raw[i*subscriptionSize : (i+1)*subscriptionSize]
		sub := Subscription{Userdata: binary.LittleEndian.Uint64(b[0:]), Type: EventType(b[8])}
		switch sub.Type {
		case EventClock:
			sub.Clock = ClockID(binary.LittleEndian.Uint32(b[16:]))
			sub.Timeout = binary.LittleEndian.Uint64(b[24:])
			sub.Precision = binary.LittleEndian.Uint64(b[32:])
			sub.Flags = binary.LittleEndian.Uint16(b[40:])
			if !validClock(sub.Clock) || sub.Flags&^SubclockAbstime != 0 {
				ready = append(ready, Event{Userdata: sub.Userdata, Type: sub.Type, Errno: EINVAL})
				continue
			}
		case EventFdRead, EventFdWrite:
			d, errno := s.get(binary.LittleEndian.Uint32(b[16:]))
			switch {
			case errno != ESUCCESS:
			case d.kind == kindDir:
				errno = EBADF
			case !d.has(RightPollFdReadwrite):
				errno = ENOTCAPABLE
			}
			if errno != ESUCCESS {
				ready = append(ready, Event{Userdata: sub.Userdata, Type: sub.Type, Errno: errno})
				continue
			}
			sub.Handle = d.handle
			if sub.Type == EventFdWrite {
				if writers == nil {
					writers = make(map[uint64]*descriptor)
				}
				w := d
				if d.kind != kindConn {
					w = nil
				}
				if prev, seen := writers[sub.Userdata]; seen && prev != w {
					w = nil
				}
				writers[sub.Userdata] = w
			}
		default:
			return EINVAL, nil
		}
		subs = append(subs, sub)
	}
	events := ready
	if len(events) == 0 {
		var err error
		events, err = s.host.Poll(c.ctx, subs)
		if err != nil {
			return 0, err
		}
		if len(events) > len(subs) {
			return 0, fmt.Errorf("host returned %d events for %d subscriptions", len(events), len(subs))
		}
		for _, e := range events {
			if d := writers[e.Userdata]; d != nil && e.Type == EventFdWrite && e.Errno == ESUCCESS {
				d.credit = writeCredit(e)
			}
		}
	}
	b := make([]byte, len(events)*eventSize)
	for i, e := range events {
		p := b[i*eventSize:]
		binary.LittleEndian.PutUint64(p[0:], e.Userdata)
		binary.LittleEndian.PutUint16(p[8:], uint16(e.Errno))
		p[10] = byte(e.Type)
		if e.Type != EventClock {
			binary.LittleEndian.PutUint64(p[16:], e.NBytes)
			binary.LittleEndian.PutUint16(p[24:], e.Flags)
		}
	}
	c.mem.Write(out, b)
	c.mem.PutUint32(nOut, uint32(len(events)))
	return ESUCCESS, nil
}

// schedYield returns at once: a guest is single-threaded, so there is no
// one to yield to.
func (s *System) schedYield(*call) (Errno, error) { return ESUCCESS, nil }
