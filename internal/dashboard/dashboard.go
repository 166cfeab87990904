// Package dashboard serves a live web page of an ftvm cluster: its hosts,
// every VM with its primary, backup and protection, charts of the backups'
// lag and the Output Rule's delay over the last minutes, and the timeline
// of the event history. It reads shared storage as ftvm status and ftvm
// events do, so any host's dashboard shows the whole cluster, and pushes
// what it reads to the page as server-sent events once a second. The page
// is plain HTML, CSS and JavaScript embedded in the binary: no build step,
// nothing fetched from elsewhere.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"ftvm/host"
	"ftvm/storage"
)

//go:embed assets
var assets embed.FS

const (
	// DefaultInterval is how often the dashboard reads the cluster's state.
	DefaultInterval = time.Second
	// historyLen is how many samples of each VM the charts show: five
	// minutes at one a second.
	historyLen = 300
	// eventsShown is how many of the latest events the timeline shows.
	eventsShown = 200
)

// Sample is one point of a VM's charts.
type Sample struct {
	// T is the time in milliseconds since the Unix epoch.
	T int64 `json:"t"`
	// LagMillis is how far the backup's replay trails its primary.
	LagMillis float64 `json:"lag_ms"`
	// The Output Rule's delay and the logging channel's round trip over
	// the primary's last 10 s (p50, p99), in milliseconds.
	DelayP50 float64 `json:"delay_p50_ms"`
	DelayP99 float64 `json:"delay_p99_ms"`
	RTTP50   float64 `json:"rtt_p50_ms"`
	// Generation and Protected tell the failovers apart on a chart.
	Generation uint64 `json:"generation"`
	Protected  bool   `json:"protected"`
}

// State is what the page shows: sent as an event each interval.
type State struct {
	Time   time.Time         `json:"time"`
	Self   string            `json:"self"`
	Hosts  []host.HostState  `json:"hosts"`
	VMs    []host.VMState    `json:"vms"`
	Events []storage.Event   `json:"events"`
	Sample map[string]Sample `json:"sample"`
	// Error says why the state could not be read (storage unreachable),
	// if it could not; the rest is then the last state read.
	Error string `json:"error,omitempty"`
}

// Server is a cluster's dashboard, as seen by host Self.
type Server struct {
	dir      storage.Store
	self     string
	log      *slog.Logger
	interval time.Duration
	mux      *http.ServeMux

	// busy, if set, says the host is busy with what cannot wait (taking
	// VMs over): readings wait, up to the interval, while it is.
	busy func() bool

	refreshMu sync.Mutex // one refresh at a time
	// Read and written by refresh only (under refreshMu).
	eventsStamp string
	events      []storage.Event

	mu      sync.Mutex
	history map[string][]Sample // by VM
	state   []byte              // the last State, JSON
	subs    map[chan []byte]struct{}
}

// New returns the dashboard of the cluster in dir, served by host self.
// Run keeps it current; log may be nil.
func New(dir storage.Store, self string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{dir: dir, self: self, log: log, interval: DefaultInterval, history: map[string][]Sample{}, subs: map[chan []byte]struct{}{}}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /events", s.serveEvents)
	s.mux.HandleFunc("GET /api/state", s.serveState)
	return s
}

// DeferWhile makes Run put off each reading, by up to an interval, while
// busy reports true. Call it before Run.
func (s *Server) DeferWhile(busy func() bool) { s.busy = busy }

// ServeHTTP serves the page (/), its assets (/static/), its event stream
// (/events) and the current state as JSON (/api/state).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run reads the cluster's state every interval (less often in a large
// cluster: see nextRefresh) and sends it to the pages that watch, until
// ctx is done.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTimer(s.interval)
	defer t.Stop()
	for {
		began := time.Now()
		s.refresh(began)
		t.Reset(nextRefresh(s.interval, time.Since(began)))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for deadline := time.Now().Add(s.interval); s.busy != nil && s.busy() && time.Now().Before(deadline); {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// nextRefresh is the wait before the next reading of the cluster's state,
// which took took: the interval, or longer in a cluster so large that
// reading it would cost the host more than 1/refreshShare of a CPU (a
// host with 1,000 VMs spent a quarter of its CPU reading them every
// second during a mass failover).
func nextRefresh(interval, took time.Duration) time.Duration {
	return max(interval, refreshShare*took)
}

const refreshShare = 20

// refresh reads the state, records its samples and sends it to the
// watchers.
func (s *Server) refresh(now time.Time) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	st := State{Time: now.UTC(), Self: s.self, Sample: map[string]Sample{}}
	hosts, err := host.Hosts(s.dir, now)
	var vms []host.VMState
	if err == nil {
		vms, err = host.VMs(s.dir, now)
	}
	if err == nil {
		err = s.readEvents()
	}
	if err != nil {
		s.log.Debug("dashboard: cannot read the cluster's state", "err", err)
		s.mu.Lock()
		var last State
		if json.Unmarshal(s.state, &last) == nil {
			st.Hosts, st.VMs, st.Events = last.Hosts, last.VMs, last.Events
		}
		s.mu.Unlock()
		st.Error = err.Error()
	} else {
		st.Hosts, st.VMs, st.Events = hosts, vms, s.events
	}
	if st.Hosts == nil {
		st.Hosts = []host.HostState{}
	}
	if st.VMs == nil {
		st.VMs = []host.VMState{}
	}
	if st.Events == nil {
		st.Events = []storage.Event{}
	}
	if err == nil {
		for _, v := range vms {
			st.Sample[v.Name] = Sample{
				T: now.UnixMilli(), LagMillis: v.LagMillis,
				DelayP50: v.OutputDelayP50, DelayP99: v.OutputDelayP99, RTTP50: v.AckRTTP50,
				Generation: v.Generation, Protected: v.Protected,
			}
		}
	}
	b, jerr := json.Marshal(st)
	if jerr != nil {
		s.log.Warn("dashboard: cannot encode the state", "err", jerr)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for vm, p := range st.Sample {
		h := append(s.history[vm], p)
		if len(h) > historyLen {
			h = append(h[:0], h[len(h)-historyLen:]...)
		}
		s.history[vm] = h
	}
	if err == nil {
		for vm := range s.history {
			if _, ok := st.Sample[vm]; !ok {
				delete(s.history, vm) // deleted from storage
			}
		}
	}
	s.state = b
	for ch := range s.subs {
		select {
		case ch <- b:
		default: // a slow page misses a point
		}
	}
}

// readEvents rereads the event history if it changed.
func (s *Server) readEvents() error {
	stamp, err := s.dir.EventsStamp()
	if err != nil {
		return err
	}
	if stamp == s.eventsStamp && s.events != nil {
		return nil
	}
	evs, err := s.dir.Events()
	if err != nil {
		return err
	}
	if len(evs) > eventsShown {
		evs = evs[len(evs)-eventsShown:]
	}
	if evs == nil {
		evs = []storage.Event{}
	}
	s.events, s.eventsStamp = evs, stamp
	return nil
}

// current returns the last state, reading it first if there is none yet.
func (s *Server) current() []byte {
	s.mu.Lock()
	b := s.state
	s.mu.Unlock()
	if b == nil {
		s.refresh(time.Now())
		s.mu.Lock()
		b = s.state
		s.mu.Unlock()
	}
	return b
}

func (s *Server) serveState(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(s.current())
}

// serveEvents streams the state to a page: the charts' history first,
// then each state as it is read.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 4)
	cur := s.current()
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	hist, err := json.Marshal(s.history)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	send := func(event string, data []byte) error {
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		fl.Flush()
		return err
	}
	if send("history", hist) != nil || send("state", cur) != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			if send("state", b) != nil {
				return
			}
		}
	}
}
