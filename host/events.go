package host

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"ftvm/storage"
)

// The event history: the host's log lines that mark a change in a VM's
// life (or the host's) are also appended to shared storage as events
// (storage.Event), which ftvm events prints for the whole cluster. The
// log is where they are decided, so a handler beside the log's takes
// them, rather than a second call beside each log line.

// eventKind returns the kind of event a log message is, if it is one.
func eventKind(msg string) (string, bool) {
	switch msg {
	case "host up":
		return "host up", true
	case "host down":
		return "host down", true
	case "vm started":
		return "started", true
	case "backup connected":
		return "backup connected", true
	case "peer silent, claiming":
		return "peer silent", true
	case "won generation":
		return "claim won", true
	case "lost generation, halting":
		return "claim lost", true
	case "live":
		return "went live", true
	case "fenced the old primary":
		return "fenced", true
	case "go-live failed", "vm failed":
		return "failed", true
	case "replay diverged":
		return "divergence", true
	case "guest ended":
		return "guest exit", true
	case "cloning to restore redundancy", "cloning to move the backup":
		return "clone started", true
	case "clone done: protected again", "clone done: the backup moved":
		return "clone done", true
	case "clone failed; running alone, will retry", "planned clone failed":
		return "clone failed", true
	case "switchover: handed over":
		return "handed over", true
	case "switchover: following the new primary as its backup":
		return "following", true
	case "switchover: the backup did not take over; the guest goes on here":
		return "handover undone", true
	case "the primary handed the vm over: taking over":
		return "switchover", true
	case "a later generation was claimed by another host: halting":
		return "halted", true
	case "every replica of the vm was lost: starting it again from its disk; its memory is lost":
		return "restarted", true
	case "primary stopped the vm":
		return "stopped", true
	case "draining":
		return "draining", true
	}
	return "", false
}

// eventSink appends a host's events to storage. A log line that is an
// event must not wait for the store: runners log as they act, and a
// thousand runners going live at once each appended under one lock (a
// file's open, write and close apiece) before acting on. So append
// queues the event, and one goroutine (run) writes them in order.
type eventSink struct {
	dir  storage.Store
	host string
	// gens holds each VM's generation on this host (the runners' nodes'),
	// for events whose log line does not say it: read without a lock, as
	// a log line may be written under any.
	gens sync.Map // vm name -> uint64
	// metrics counts the events.
	metrics *hostMetrics
	// busy, if set, says the host is taking VMs over: the history waits
	// (up to takeoverFirst), written in one batch after.
	busy func() bool

	mu      sync.Mutex
	pending []storage.Event // at most maxPendingEvents; more are dropped
	kick    chan struct{}   // capacity 1: events wait
}

// maxPendingEvents bounds the events waiting to be written; history is
// best effort, and a store that is down must not grow the host's memory.
const maxPendingEvents = 10000

func newEventSink(dir storage.Store, host string, metrics *hostMetrics, busy func() bool) *eventSink {
	return &eventSink{dir: dir, host: host, metrics: metrics, busy: busy, kick: make(chan struct{}, 1)}
}

func (s *eventSink) append(e storage.Event) {
	s.metrics.event(e.VM, e.Kind)
	s.mu.Lock()
	if len(s.pending) < maxPendingEvents {
		s.pending = append(s.pending, e)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run writes the events as they come until ctx is done, and then those
// still waiting.
func (s *eventSink) run(ctx context.Context) {
	for {
		select {
		case <-s.kick:
			for deadline := time.Now().Add(takeoverFirst); s.busy != nil && s.busy() && time.Now().Before(deadline); {
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
				if ctx.Err() != nil {
					break
				}
			}
			s.flush()
		case <-ctx.Done():
			s.flush()
			return
		}
	}
}

// flush writes the events waiting, oldest first.
func (s *eventSink) flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batch) > 0 {
		_ = s.dir.AppendEvents(batch) // history is best effort: storage may be down
	}
}

// eventHandler passes every record to next, and the events among them to
// its sink.
type eventHandler struct {
	next  slog.Handler
	sink  *eventSink
	attrs []slog.Attr // from WithAttrs (the runner's vm)
}

func newEventHandler(next slog.Handler, sink *eventSink) slog.Handler {
	return &eventHandler{next: next, sink: sink}
}

func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	if kind, ok := eventKind(r.Message); ok {
		e := storage.Event{Time: r.Time.UTC(), Host: h.sink.host, Kind: kind}
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		var detail []string
		take := func(a slog.Attr) bool {
			switch a.Key {
			case "vm":
				e.VM = a.Value.String()
			case "generation":
				switch v := a.Value.Resolve(); v.Kind() {
				case slog.KindUint64:
					e.Generation = v.Uint64()
				case slog.KindInt64:
					e.Generation = uint64(max(v.Int64(), 0))
				}
			case "host":
			default:
				detail = append(detail, fmt.Sprintf("%s=%v", a.Key, a.Value))
			}
			return true
		}
		for _, a := range h.attrs {
			take(a)
		}
		r.Attrs(take)
		e.Detail = strings.Join(detail, " ")
		if g, ok := h.sink.gens.Load(e.VM); ok && e.Generation == 0 && e.VM != "" {
			e.Generation = g.(uint64)
		}
		h.sink.append(e)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{next: h.next.WithAttrs(as), sink: h.sink, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

// WithGroup nests what follows: event fields are read from the top level
// only, so the handler passes groups on and keeps its attributes.
func (h *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{next: h.next.WithGroup(name), sink: h.sink, attrs: h.attrs}
}
