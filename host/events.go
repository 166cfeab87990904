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

// eventKinds maps the log messages that are events to their kinds.
var eventKinds = map[string]string{
	"host up":                                     "host up",
	"host down":                                   "host down",
	"vm started":                                  "started",
	"backup connected":                            "backup connected",
	"peer silent, claiming":                       "peer silent",
	"won generation":                              "claim won",
	"lost generation, halting":                    "claim lost",
	"live":                                        "went live",
	"fenced the old primary":                      "fenced",
	"go-live failed":                              "failed",
	"vm failed":                                   "failed",
	"replay diverged":                             "divergence",
	"guest ended":                                 "guest exit",
	"cloning to restore redundancy":               "clone started",
	"cloning to move the backup":                  "clone started",
	"clone done: protected again":                 "clone done",
	"clone done: the backup moved":                "clone done",
	"clone failed; running alone, will retry":     "clone failed",
	"planned clone failed":                        "clone failed",
	"switchover: handed over":                     "handed over",
	"the primary handed the vm over: taking over": "switchover",
	"a later generation was claimed by another host: halting":                               "halted",
	"every replica of the vm was lost: starting it again from its disk; its memory is lost": "restarted",
	"primary stopped the vm": "stopped",
	"draining":               "draining",
}

// eventSink appends a host's events to storage, one at a time.
type eventSink struct {
	mu   sync.Mutex
	dir  *storage.Dir
	host string
	// gens holds each VM's generation on this host (the runners' nodes'),
	// for events whose log line does not say it: read without a lock, as
	// a log line may be written under any.
	gens sync.Map // vm name -> uint64
}

func (s *eventSink) append(e storage.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.dir.AppendEvent(e) // history is best effort: storage may be down
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
	if kind, ok := eventKinds[r.Message]; ok {
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
