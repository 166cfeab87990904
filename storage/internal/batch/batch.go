// Package batch gathers the names of changed VMs between a store's watch
// and its consumer, for the backends' storage.Watcher: a consumer that
// reads slowly never blocks the watch nor loses a name, it gets every
// name gathered meanwhile in one batch.
package batch

// Set is the names not yet handed over, each once, in the order they
// first changed; or a loss, when changes may have been missed. The
// zero Set is empty. It belongs to one goroutine.
type Set struct {
	seen  map[string]struct{}
	names []string
	lost  bool
}

// Add records that name changed. After a loss it does nothing: the nil
// batch to come covers every VM.
func (s *Set) Add(name string) {
	if s.lost {
		return
	}
	if _, ok := s.seen[name]; ok {
		return
	}
	if s.seen == nil {
		s.seen = make(map[string]struct{})
	}
	s.seen[name] = struct{}{}
	s.names = append(s.names, name)
}

// Lose records that changes may have been missed: the next batch is nil.
func (s *Set) Lose() {
	s.lost = true
	s.seen, s.names = nil, nil
}

// Lost reports whether the next batch is nil.
func (s *Set) Lost() bool { return s.lost }

// Ready reports whether there is a batch to hand over.
func (s *Set) Ready() bool { return s.lost || len(s.names) > 0 }

// Batch is the batch to hand over: nil after a loss, else the names.
// The Set keeps no reference to it after Sent.
func (s *Set) Batch() []string { return s.names }

// Sent empties the Set once its batch was handed over.
func (s *Set) Sent() {
	s.lost = false
	s.seen, s.names = nil, nil
}
