package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"ftvm/ft"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasm"
)

// serveClone is a spare host's side of a clone (see clone.go): it takes
// the pages and the final state a primary sends, restores a replaying VM
// from them, and once the primary says the new pair owns generation
// ch.Gen, runs it as the VM's backup, with c as its logging channel. Until
// then nothing of it takes part in the pair: a clone cut short leaves
// nothing behind.
func (h *Host) serveClone(ctx context.Context, c *replog.Conn, ch cloneHello) {
	refuse := func(format string, args ...any) {
		reason := fmt.Sprintf(format, args...)
		h.log.Info("clone refused", "vm", ch.VM, "from", ch.Primary, "reason", reason)
		_ = c.WriteFrame(replog.FrameBye, []byte(reason))
		c.Close()
	}
	spec, err := h.dir.VM(ch.VM)
	if err != nil {
		refuse("%v", err)
		return
	}
	owner, ok, err := h.dir.Latest(ch.VM)
	switch {
	case err != nil:
		refuse("%v", err)
		return
	case spec.Stopped:
		refuse("vm %s is stopped", ch.VM)
		return
	case ch.Primary == h.cfg.Name:
		refuse("a host cannot be its own backup")
		return
	case !ok || owner.Host != ch.Primary || owner.Generation+1 != ch.Gen:
		refuse("%s does not own generation %d of %s", ch.Primary, ch.Gen-1, ch.VM)
		return
	}
	if r := h.runner(ch.VM); r != nil && !r.finished() {
		refuse("this host already runs %s", ch.VM)
		return
	}
	if h.draining() {
		refuse("this host is draining")
		return
	}
	if spec.LocalDisk() && h.cfg.Data == "" {
		refuse("%v", errNoData)
		return
	}
	mod, err := h.dir.Module(ch.VM)
	if err != nil {
		refuse("%v", err)
		return
	}
	cm, err := h.modules.compile(mod)
	if err != nil {
		refuse("%v", err)
		return
	}
	log := h.log.With("vm", ch.VM)
	log.Info("receiving a clone", "from", ch.Primary, "generation", ch.Gen)
	start := time.Now()
	if err := c.WriteFrame(frameCloneReady, nil); err != nil {
		c.Close()
		return
	}
	h.mu.Lock()
	h.incoming[ch.VM]++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.incoming[ch.VM]--; h.incoming[ch.VM] <= 0 {
			delete(h.incoming, ch.VM)
		}
		h.mu.Unlock()
	}()
	r := h.newRunner(ctx, spec, ft.NewNode(h.cfg.Node, ft.Backup, ch.Gen, ch.Primary, time.Now()))
	r.cm = cm
	b, err := r.receiveClone(c, cm, ch)
	if err != nil {
		log.Warn("clone abandoned", "from", ch.Primary, "err", err)
		_ = c.WriteFrame(replog.FrameBye, []byte(err.Error()))
		c.Close()
		r.cancel()
		return
	}
	h.mu.Lock()
	if old := h.runners[ch.VM]; old != nil && !old.finished() {
		h.mu.Unlock()
		b.vm.Close()
		c.Close()
		r.cancel()
		return
	}
	h.runners[ch.VM] = r
	h.mu.Unlock()
	first, _ := b.src.Received()
	r.log.Info("vm started", "role", ft.Backup.String(), "generation", ch.Gen, "peer", ch.Primary,
		"cloned_in", time.Since(start).Round(time.Millisecond).String(), "from_entry", first+1)
	b.start(b.vm, c)
	// Its node starts now: the primary counts as heard from as of the
	// commit, not as of the clone's start.
	node := ft.NewNode(h.cfg.Node, ft.Backup, ch.Gen, ch.Primary, time.Now())
	node.Step(ft.Event{Kind: ft.EvLogTraffic}) // it just heard the commit
	go r.drive(node)
}

// receiveClone reads a clone's pages and final state from c, restores the
// VM they make into a backup side of r, says so, and waits for the commit
// (see awaitCommit).
func (r *runner) receiveClone(c *replog.Conn, cm *wasm.CompiledModule, ch cloneHello) (*backupSide, error) {
	target := vmm.NewCloneTarget(cm)
	var sessions []byte
	var disk *diskReceiver
	incoming := filepath.Join(r.h.diskRoot(r.vm), "incoming")
	defer func() {
		if disk != nil {
			disk.close()
			os.RemoveAll(incoming) // the clone failed before it was used
		}
	}()
	for {
		c.SetReadDeadline(time.Now().Add(cloneStepTimeout))
		typ, p, err := c.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch typ {
		case frameCloneChunk:
			chunk, err := vmm.DecodeChunk(p)
			if err == nil {
				err = target.Apply(chunk)
			}
			if err != nil {
				return nil, err
			}
			continue
		case frameCloneSync:
			if err := c.WriteFrame(frameCloneReady, nil); err != nil {
				return nil, err
			}
			continue
		case frameCloneSessions:
			sessions = append(sessions[:0], p...)
			continue
		case frameCloneDisk:
			if !r.spec.LocalDisk() {
				return nil, errors.New("a disk record for a vm without a local disk")
			}
			if disk == nil {
				if err := os.RemoveAll(incoming); err != nil {
					return nil, err
				}
				if err := os.MkdirAll(incoming, 0o755); err != nil {
					return nil, err
				}
				disk = &diskReceiver{dir: incoming}
			}
			if err := disk.apply(p); err != nil {
				return nil, fmt.Errorf("local disk: %w", err)
			}
			continue
		case frameCloneFinal:
		case replog.FrameBye:
			return nil, fmt.Errorf("the primary gave up: %s", p)
		default:
			return nil, fmt.Errorf("unexpected frame type %d", typ)
		}
		// A host marked draining since the clone began takes no VM.
		if r.h.draining() {
			return nil, errors.New("this host is draining")
		}
		if r.spec.LocalDisk() {
			if disk == nil || !disk.ended {
				return nil, errors.New("local disk: the copy did not end before the final state")
			}
			// The copy replaces whatever this host had: a copy left
			// behind is never used again (see localdisk.go).
			disk.close()
			own := r.h.localDiskDir(r.vm)
			if err := os.RemoveAll(own); err != nil {
				return nil, err
			}
			if err := os.Rename(incoming, own); err != nil {
				return nil, err
			}
			disk = nil
		}
		st, err := target.DecodeFinal(p)
		if err != nil {
			return nil, err
		}
		// The backup's log starts after the state's last entry.
		b := r.newBackupSide(vmm.NewLiveSource(st.Seq()))
		if err := b.kept.seed(sessions); err != nil {
			return nil, err
		}
		vm, err := target.Restore(cm, b.vmConfig(), st)
		if err != nil {
			return nil, err
		}
		if err := r.attachMirror(vm); err != nil {
			vm.Close()
			return nil, err
		}
		b.vm = vm
		if err := c.WriteFrame(frameCloneRestored, nil); err != nil {
			vm.Close()
			return nil, err
		}
		typ, p, err = r.awaitCommit(c, ch)
		switch {
		case errors.Is(err, errCommittedOnStorage):
			// The channel is gone; the backup dials its primary again.
			r.log.Info("the clone's commit did not come, but the storage names this host the backup: taking it as committed", "primary", ch.Primary, "generation", ch.Gen)
			return b, nil
		case err != nil:
			vm.Close()
			return nil, err
		case typ == replog.FrameBye:
			vm.Close()
			return nil, fmt.Errorf("the primary gave up: %s", p)
		case typ != frameCloneCommit:
			vm.Close()
			return nil, fmt.Errorf("unexpected frame type %d", typ)
		}
		c.SetDeadline(time.Time{})
		return b, nil
	}
}

// errCommittedOnStorage: the commit frame did not come, but the owner
// record shows the commit (see awaitCommit).
var errCommittedOnStorage = errors.New("committed on storage")

// awaitCommit reads the frame after the restored state, normally the
// commit. The commit is the primary's claim on storage, not the frame: a
// primary that crashed between the two would otherwise leave its VM with
// no replica that can go on (its old backup loses its claim to the new
// pair's generation, and this one would never start). So while it waits,
// and when the connection ends, it reads the owner record: one that names
// this host the backup of the clone's generation for as long as the
// failure timeout, or when the connection ended, makes the clone
// committed (errCommittedOnStorage): this backup's node starts, and takes
// over if the primary is gone. The connection is then closed.
func (r *runner) awaitCommit(c *replog.Conn, ch cloneHello) (byte, []byte, error) {
	named := func() bool {
		o, ok, err := r.h.dir.Owner(ch.VM, ch.Gen)
		return err == nil && ok && o.Host == ch.Primary && o.Backup == r.h.cfg.Name
	}
	wait := r.h.cfg.Node.FailureTimeout
	if wait <= 0 {
		wait = ft.DefaultFailureTimeout
	}
	done := make(chan struct{})
	var onStorage atomic.Bool
	go func() {
		t := time.NewTicker(commitPoll)
		defer t.Stop()
		var since time.Time
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			switch {
			case !named():
				since = time.Time{}
			case since.IsZero():
				since = time.Now()
			case time.Since(since) >= wait:
				onStorage.Store(true)
				c.SetReadDeadline(time.Now()) // interrupts the read
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(cloneStepTimeout))
	typ, p, err := c.ReadFrame()
	close(done)
	if err != nil && (onStorage.Load() || named()) {
		c.Close()
		return 0, nil, errCommittedOnStorage
	}
	return typ, p, err
}

// commitPoll is how often a clone's target reads the owner record while
// it waits for the commit.
const commitPoll = 100 * time.Millisecond
