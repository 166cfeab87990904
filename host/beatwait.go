package host

import "ftvm/internal/sockq"

// beatsWaiting reports whether heartbeat datagrams wait in the kernel, not
// yet read: the goroutine that reads them (woken by the network poller,
// which queues it behind every other runnable goroutine) has not run yet.
func (h *Host) beatsWaiting() bool { return sockq.Waiting(h.udp) }
