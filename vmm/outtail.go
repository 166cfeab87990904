package vmm

// Outputs a backup writes again. The primary writes the guest's stdout and
// stderr once the backup has the log behind them (the Output Rule), and
// tells the backup how far it got (replog.Batch.Out). A primary that dies
// may leave outputs unwritten: released but not yet performed, or held for
// an acknowledgement that came too late. The backup's replay produced them
// all, and drops them as it goes; so it keeps what lies beyond the
// primary's last report, and writes that when it goes live (VM.GoLiveWith),
// before the guest's next output. The report trails the primary's writes,
// so a few may appear twice: like VMware FT's backup, the survivor may
// repeat an output, never lose one.

// maxTail bounds what a backup keeps of each stream. A primary reports
// every millisecond or so while it writes, and the replay trails it by the
// lag bound at most, so the tail is small unless the reports stop; beyond
// the bound the oldest bytes go (and are counted).
const maxTail = 16 << 20

// MaxHeldOutput is how many bytes of stdout and stderr a primary lets its
// Gate hold (Gate.Held().StdBytes) before it holds its guest back, so that
// a backup, which keeps up to maxTail of them, always has every byte the
// primary may not have written.
const MaxHeldOutput = maxTail / 2

// outTail is the end of one output stream as a backup's replay produced
// it.
type outTail struct {
	end  uint64 // bytes produced in all
	buf  []byte // the last of them, from offset end-len(buf) on
	lost uint64 // bytes dropped beyond maxTail that the primary had not reported
}

// add appends data the replay produced; the primary has reported written
// bytes written.
func (t *outTail) add(data []byte, written uint64) {
	t.end += uint64(len(data))
	t.buf = append(t.buf, data...)
	t.trim(written)
}

// trim drops what the primary reported written, and what exceeds maxTail.
func (t *outTail) trim(written uint64) {
	drop := uint64(0)
	if start := t.end - uint64(len(t.buf)); written > start {
		drop = min(written-start, uint64(len(t.buf)))
	}
	if over := uint64(len(t.buf)) - drop; over > maxTail {
		t.lost += over - maxTail
		drop += over - maxTail
	}
	if drop > 0 {
		// Copied down, so the buffer's array is reused, not grown.
		t.buf = append(t.buf[:0], t.buf[drop:]...)
	}
}

// pending returns the bytes beyond written, which the primary may not have
// written.
func (t *outTail) pending(written uint64) []byte {
	t.trim(written)
	return t.buf
}
