package etcdstore

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"ftvm/storage"
	"ftvm/storage/internal/batch"
)

var _ storage.Watcher = (*Store)(nil)

// Backoff of a watch started again after a failure.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 2 * time.Second
)

// WatchVMs reports the VMs whose spec or owner records change (see
// storage.Watcher), from an etcd watch of the vms/ prefix that starts
// right after the revision WatchVMs reads. The specs and owner records
// have no prefix of their own (vms/NAME/spec, vms/NAME/owners/), so the
// watch also receives the statuses and modules, and drops them.
//
// A watch that fails (its revision compacted, canceled by etcd, its
// stream closed) is started again from the current revision, after a
// short backoff; then a nil batch says that changes may have been
// missed.
//
// The failpoint of SetReachable does not apply: the watch only names VMs
// to read, and the reads fail while the store is unreachable.
func (s *Store) WatchVMs(ctx context.Context) (<-chan []string, error) {
	rev, err := s.revision(ctx)
	if err != nil {
		return nil, err
	}
	w := &vmWatch{s: s, ctx: ctx}
	w.start(rev)
	out := make(chan []string)
	go w.run(out)
	return out, nil
}

// revision returns etcd's current revision.
func (s *Store) revision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	r, err := s.cli.Get(ctx, s.key("vms"), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap("watch vms", err)
	}
	return r.Header.Revision, nil
}

// vmWatch is a WatchVMs: its etcd watch, started again after failures.
type vmWatch struct {
	s      *Store
	ctx    context.Context
	ch     clientv3.WatchChan // nil while waiting to start again
	cancel context.CancelFunc // ch's
}

// start watches the changes after revision rev.
func (w *vmWatch) start(rev int64) {
	ctx, cancel := context.WithCancel(w.ctx)
	// WithRequireLeader: a member cut off from the leader ends the watch
	// (an error, then a watch started again) rather than keep it silent.
	w.ch = w.s.cli.Watch(clientv3.WithRequireLeader(ctx), w.s.key("vms")+"/",
		clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	w.cancel = cancel
}

// stop ends the current watch, if any.
func (w *vmWatch) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.ch, w.cancel = nil, nil
}

// run hands the changed VMs to out in batches until w.ctx ends, then
// closes out.
func (w *vmWatch) run(out chan<- []string) {
	defer close(out)
	defer w.stop()
	var set batch.Set
	var retry <-chan time.Time
	backoff := watchRetryMin
	for {
		// After a failure, the nil batch waits for the new watch: a caller
		// that looked at every VM before the watch began again could miss
		// a change made in between.
		var send chan<- []string
		if set.Ready() && w.ch != nil {
			send = out
		}
		select {
		case <-w.ctx.Done():
			return
		case send <- set.Batch():
			set.Sent()
		case resp, ok := <-w.ch:
			if !ok || resp.Err() != nil || resp.Canceled || resp.CompactRevision != 0 {
				if w.ctx.Err() != nil {
					return
				}
				w.stop()
				set.Lose()
				retry = time.After(backoff)
				backoff = min(2*backoff, watchRetryMax)
				continue
			}
			backoff = watchRetryMin
			for _, ev := range resp.Events {
				if vm, ok := w.s.vmOfKey(string(ev.Kv.Key)); ok {
					set.Add(vm)
				}
			}
		case <-retry:
			retry = nil
			rev, err := w.s.revision(w.ctx)
			if err != nil {
				retry = time.After(backoff)
				backoff = min(2*backoff, watchRetryMax)
				continue
			}
			w.start(rev)
		}
	}
}

// vmOfKey returns the VM whose spec or owner record key is.
func (s *Store) vmOfKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.key("vms")+"/")
	if !ok {
		return "", false
	}
	vm, sub, ok := strings.Cut(rest, "/")
	if !ok || (sub != "spec" && !strings.HasPrefix(sub, "owners/")) {
		return "", false
	}
	return vm, true
}
