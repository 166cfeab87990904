package host

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ftvm/ft"
	"ftvm/replog"
	"ftvm/vmm"
)

// Metrics: each host has its own Prometheus registry (no global one, so
// that hosts in one process, as in tests, keep theirs apart). Most of
// what it exports is read at scrape time from the state the host keeps
// anyway (the runners' soft state, log buffers, gates, clones), by
// hostCollector; only what must be seen as it happens is observed there:
// the output delays and logging round trips (histograms), heartbeats
// received and missed, and the events (claims, failovers) the event
// handler sees.

// delayBuckets are the bounds, in seconds, of the output delay and round
// trip histograms: a loopback round trip takes tens of microseconds, a
// LAN's hundreds, and anything near a second is a failure being found.
var delayBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1}

// hostMetrics is a host's registry and the metrics observed as they
// happen.
type hostMetrics struct {
	reg         *prometheus.Registry
	outputDelay *prometheus.HistogramVec
	logRTT      *prometheus.HistogramVec

	beatsReceived, beatsMissed, beatsDropped atomic.Uint64

	mu     sync.Mutex
	events map[eventKey]uint64 // events by VM and kind
}

type eventKey struct{ vm, kind string }

func newHostMetrics(h *Host) *hostMetrics {
	m := &hostMetrics{
		reg: prometheus.NewRegistry(),
		outputDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ftvm", Subsystem: "vm", Name: "output_delay_seconds",
			Help:    "How long the primary's outputs waited for the backup's acknowledgement (the Output Rule's cost).",
			Buckets: delayBuckets,
		}, []string{"vm"}),
		logRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ftvm", Subsystem: "vm", Name: "log_round_trip_seconds",
			Help:    "Round trips of the logging channel: a batch written to its acknowledgement read.",
			Buckets: delayBuckets,
		}, []string{"vm"}),
		events: map[eventKey]uint64{},
	}
	m.reg.MustRegister(
		m.outputDelay, m.logRTT,
		&hostCollector{h: h, m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the host's Prometheus registry.
func (h *Host) Registry() *prometheus.Registry { return h.metrics.reg }

// MetricsHandler serves the host's metrics in Prometheus's exposition
// formats.
func (h *Host) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(h.metrics.reg, promhttp.HandlerOpts{})
}

// watch makes the gate and log buffer of vm's primary side report their
// delays and round trips.
func (m *hostMetrics) watch(vm string, gate *vmm.Gate, buf *logBuffer) {
	if m == nil {
		return
	}
	delay, rtt := m.outputDelay.WithLabelValues(vm), m.logRTT.WithLabelValues(vm)
	gate.OnDelay(func(d time.Duration) { delay.Observe(d.Seconds()) })
	buf.observeRTT(func(d time.Duration) { rtt.Observe(d.Seconds()) })
}

// forget drops what the metrics hold of vm: it was stopped, and its
// runner is gone.
func (m *hostMetrics) forget(vm string) {
	if m == nil {
		return
	}
	m.outputDelay.DeleteLabelValues(vm)
	m.logRTT.DeleteLabelValues(vm)
	m.mu.Lock()
	for k := range m.events {
		if k.vm == vm {
			delete(m.events, k)
		}
	}
	m.mu.Unlock()
}

// event counts an event of the history.
func (m *hostMetrics) event(vm, kind string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.events[eventKey{vm, kind}]++
	m.mu.Unlock()
}

// beat counts a heartbeat received, and the ones missed before it: gap is
// how long after the one before (of the same VM, peer and generation) it
// came, 0 for the first.
func (m *hostMetrics) beat(gap, interval time.Duration) {
	if m == nil {
		return
	}
	m.beatsReceived.Add(1)
	if interval > 0 && gap > interval*3/2 {
		// Rounded: a heartbeat a little late is not one missed.
		m.beatsMissed.Add(uint64((gap+interval/2)/interval) - 1)
	}
}

func (m *hostMetrics) dropped() {
	if m != nil {
		m.beatsDropped.Add(1)
	}
}

// The metrics hostCollector reads at scrape time.
var (
	descVMRole = prometheus.NewDesc("ftvm_vm_role",
		"The role this host plays in the VM's pair (primary, backup, alone, halted): 1 for the current one.", []string{"vm", "role"}, nil)
	descVMState = prometheus.NewDesc("ftvm_vm_state",
		"The state of the VM on this host (starting, running, exited, halted, stopped, failed, host down): 1 for the current one.", []string{"vm", "state"}, nil)
	descVMGeneration = prometheus.NewDesc("ftvm_vm_generation",
		"The generation this host serves the VM in.", []string{"vm"}, nil)
	descVMProtected = prometheus.NewDesc("ftvm_vm_protected",
		"1 on a primary whose backup is connected and has acknowledged its log, else 0.", []string{"vm"}, nil)
	descVMChannelUp = prometheus.NewDesc("ftvm_vm_logging_channel_up",
		"1 while the VM's logging channel is connected.", []string{"vm"}, nil)
	descVMReconnects = prometheus.NewDesc("ftvm_vm_logging_channel_reconnects_total",
		"Logging channels connected again for the VM's replica on this host, after its first.", []string{"vm"}, nil)
	descVMLagEntries = prometheus.NewDesc("ftvm_vm_lag_entries",
		"Log entries the backup has not acknowledged (primary).", []string{"vm"}, nil)
	descVMLagBytes = prometheus.NewDesc("ftvm_vm_lag_bytes",
		"Bytes of log the backup has not acknowledged (primary).", []string{"vm"}, nil)
	descVMLagSeconds = prometheus.NewDesc("ftvm_vm_lag_seconds",
		"How long ago the primary was where the backup's replay is (primary).", []string{"vm"}, nil)
	descVMHeldOutputs = prometheus.NewDesc("ftvm_vm_held_outputs",
		"Outputs the Output Rule holds until the backup acknowledges (primary).", []string{"vm"}, nil)
	descVMHeldBytes = prometheus.NewDesc("ftvm_vm_held_output_bytes",
		"Bytes of the outputs the Output Rule holds (primary).", []string{"vm"}, nil)
	descVMLogEntries = prometheus.NewDesc("ftvm_vm_log_entries_total",
		"Log entries the primary recorded, by entry type.", []string{"vm", "type"}, nil)
	descVMLogBytes = prometheus.NewDesc("ftvm_vm_log_bytes_total",
		"Encoded bytes of the log entries the primary recorded, by entry type.", []string{"vm", "type"}, nil)
	descVMPosition = prometheus.NewDesc("ftvm_vm_position_instructions",
		"The guest's position: instructions executed (primary, through the log) or replayed (backup).", []string{"vm"}, nil)
	descVMReceived = prometheus.NewDesc("ftvm_vm_received_entries",
		"Log entries the backup received.", []string{"vm"}, nil)
	descVMCloneSent = prometheus.NewDesc("ftvm_vm_clone_sent_bytes",
		"Bytes the clone in progress has copied to its target.", []string{"vm", "target"}, nil)
	descVMCloneLeft = prometheus.NewDesc("ftvm_vm_clone_left_bytes",
		"Bytes the clone in progress has left to copy.", []string{"vm", "target"}, nil)
	descVMCloneRound = prometheus.NewDesc("ftvm_vm_clone_round",
		"The copy round of the clone in progress.", []string{"vm", "target"}, nil)
	descVMCloning = prometheus.NewDesc("ftvm_vm_cloning",
		"1 while the VM's primary clones a new backup.", []string{"vm"}, nil)
	descEvents = prometheus.NewDesc("ftvm_events_total",
		"Events of the history this host recorded, by VM and kind (see ftvm events).", []string{"vm", "kind"}, nil)
	descClaims = prometheus.NewDesc("ftvm_claims_total",
		"Generations this host claimed on shared storage, by outcome (won, lost).", []string{"vm", "outcome"}, nil)
	descFailovers = prometheus.NewDesc("ftvm_failovers_total",
		"Times a backup on this host went live in place of its failed primary.", []string{"vm"}, nil)
	descBeatsSent = prometheus.NewDesc("ftvm_heartbeats_sent_total",
		"Heartbeats this host sent.", nil, nil)
	descBeatsReceived = prometheus.NewDesc("ftvm_heartbeats_received_total",
		"Heartbeats this host received from its VMs' peers.", nil, nil)
	descBeatsMissed = prometheus.NewDesc("ftvm_heartbeats_missed_total",
		"Heartbeats that did not come in time: counted from the gap before the next one that came.", nil, nil)
	descBeatsDropped = prometheus.NewDesc("ftvm_heartbeats_dropped_total",
		"Datagrams on the heartbeat port dropped: not authentic, or replayed.", nil, nil)
	descRunners = prometheus.NewDesc("ftvm_host_vms",
		"VMs this host runs a replica of, ended ones included.", nil, nil)
	descStarted = prometheus.NewDesc("ftvm_host_start_time_seconds",
		"When the host started, in seconds since the Unix epoch.", nil, nil)
)

// hostCollector reads a host's state at scrape time.
type hostCollector struct {
	h *Host
	m *hostMetrics
}

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descVMRole, descVMState, descVMGeneration, descVMProtected, descVMChannelUp, descVMReconnects,
		descVMLagEntries, descVMLagBytes, descVMLagSeconds, descVMHeldOutputs, descVMHeldBytes,
		descVMLogEntries, descVMLogBytes, descVMPosition, descVMReceived,
		descVMCloneSent, descVMCloneLeft, descVMCloneRound, descVMCloning,
		descEvents, descClaims, descFailovers,
		descBeatsSent, descBeatsReceived, descBeatsMissed, descBeatsDropped, descRunners, descStarted,
	} {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	h, m := c.h, c.m
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(descBeatsSent, float64(h.beats.Load()))
	counter(descBeatsReceived, float64(m.beatsReceived.Load()))
	counter(descBeatsMissed, float64(m.beatsMissed.Load()))
	counter(descBeatsDropped, float64(m.beatsDropped.Load()))
	gauge(descStarted, float64(h.started.UnixNano())/1e9)

	rs := h.allRunners()
	gauge(descRunners, float64(len(rs)))
	now := time.Now()
	for _, r := range rs {
		collectRunner(r, now, gauge, counter)
	}

	m.mu.Lock()
	events := make(map[eventKey]uint64, len(m.events))
	for k, n := range m.events {
		events[k] = n
	}
	m.mu.Unlock()
	claims := map[eventKey]uint64{}
	for k, n := range events {
		counter(descEvents, float64(n), k.vm, k.kind)
		switch k.kind {
		case "claim won":
			claims[eventKey{k.vm, "won"}] += n
		case "claim lost":
			claims[eventKey{k.vm, "lost"}] += n
		case "went live":
			counter(descFailovers, float64(n), k.vm)
		}
	}
	for k, n := range claims {
		counter(descClaims, float64(n), k.vm, k.kind)
	}
}

// collectRunner reports one runner's VM.
func collectRunner(r *runner, now time.Time, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	r.mu.Lock()
	soft, state, clone := r.soft, r.state, r.cloneProg
	sd, primary := r.side, r.primary
	r.mu.Unlock()
	if sd == nil {
		// A VM this host could not run: its status says why.
		gauge(descVMState, 1, r.vm, "failed")
		return
	}
	gauge(descVMRole, 1, r.vm, soft.Role.String())
	gauge(descVMState, 1, r.vm, state)
	gauge(descVMGeneration, float64(soft.Gen), r.vm)
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	switch s := sd.(type) {
	case *primarySide:
		lag := s.buf.lag(now)
		held := s.gate.Held()
		paired := soft.Role == ft.Primary
		up := s.ch.up()
		gauge(descVMProtected, b2f(paired && up && s.buf.heardBackup()), r.vm)
		gauge(descVMChannelUp, b2f(up), r.vm)
		counter(descVMReconnects, float64(reconnects(&s.ch)), r.vm)
		if !paired {
			lag.Entries, lag.Bytes, lag.Time = 0, 0, 0
		}
		gauge(descVMLagEntries, float64(lag.Entries), r.vm)
		gauge(descVMLagBytes, float64(lag.Bytes), r.vm)
		gauge(descVMLagSeconds, lag.Time.Seconds(), r.vm)
		gauge(descVMHeldOutputs, float64(held.Outputs), r.vm)
		gauge(descVMHeldBytes, float64(held.Bytes), r.vm)
		gauge(descVMPosition, float64(lag.Pos), r.vm)
		s.buf.types(func(t replog.Type, entries, bytes uint64) {
			name := vmm.TypeName(t)
			counter(descVMLogEntries, float64(entries), r.vm, name)
			counter(descVMLogBytes, float64(bytes), r.vm, name)
		})
	case *backupSide:
		up := s.ch.up()
		gauge(descVMProtected, 0, r.vm)
		gauge(descVMChannelUp, b2f(up), r.vm)
		counter(descVMReconnects, float64(reconnects(&s.ch)), r.vm)
		seq, _ := s.src.Received()
		gauge(descVMReceived, float64(seq), r.vm)
		gauge(descVMPosition, float64(s.at.Load()), r.vm)
	}
	if primary != nil {
		gauge(descVMCloning, b2f(clone != nil), r.vm)
	}
	if clone != nil {
		gauge(descVMCloneSent, float64(clone.SentBytes), r.vm, clone.Target)
		gauge(descVMCloneLeft, float64(clone.LeftBytes), r.vm, clone.Target)
		gauge(descVMCloneRound, float64(clone.Round), r.vm, clone.Target)
	}
}

// reconnects is how many connections a channel had after its first.
func reconnects(ch *channel) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return max(ch.id-1, 0)
}
