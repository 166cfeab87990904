package vmm_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// countSink counts what a recording VM logs, framed as on the wire. The
// VM appends from its goroutine while the benchmark reads.
type countSink struct{ n, b atomic.Int64 }

func (s *countSink) Append(e replog.Entry) error {
	s.n.Add(1)
	s.b.Add(int64(len(replog.AppendEntry(nil, e))))
	return nil
}

func (s *countSink) bytes() int   { return int(s.b.Load()) }
func (s *countSink) entries() int { return int(s.n.Load()) }

// BenchmarkRecordCPU compares a CPU-bound guest under exec (no log),
// record (log to a counting sink) and wazero's interpreter and compiler,
// in one run, and reports the log rate of recording.
func BenchmarkRecordCPU(b *testing.B) {
	bin := guesttest.Build(b, "cpu-sha256")
	args := []string{"cpu-sha256", "2000000"}
	cm, err := wasm.Compile(bin, guesttest.Config())
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"exec", "record"} {
		b.Run(mode, func(b *testing.B) {
			var sink countSink
			start := time.Now()
			for range b.N {
				cfg := vmm.Config{WASI: wasi.Config{Args: args, Stdout: io.Discard}}
				if mode == "record" {
					cfg.Record = &sink
				}
				vm, err := vmm.New(cm, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := vm.Run(context.Background()); err != nil {
					b.Fatal(err)
				}
				vm.Close()
			}
			if mode == "record" {
				secs := time.Since(start).Seconds()
				b.ReportMetric(float64(sink.bytes())/secs, "logB/s")
				b.ReportMetric(float64(sink.bytes())/float64(b.N), "logB/run")
			}
		})
	}
	for _, compiler := range []bool{false, true} {
		name := "wazero-interp"
		if compiler {
			name = "wazero-compiler"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			w, err := guesttest.NewWazero(ctx, bin, compiler)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close(ctx)
			b.ResetTimer()
			for range b.N {
				if _, err := w.Run(ctx, args, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startEcho starts the echo guest serving conns connections, recording to
// sink if it is not nil, and returns its address and a channel that yields
// its end.
func startEcho(b *testing.B, cm *wasm.CompiledModule, conns int, sink vmm.Sink) (string, <-chan error, context.CancelFunc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := vmm.Config{WASI: wasi.Config{
		Args:      []string{"wasi-echo", fmt.Sprint(conns)},
		Listeners: []wasi.Listener{{Listener: ln}},
		Stdout:    io.Discard,
	}}
	if sink != nil {
		cfg.Record = sink
	}
	vm, err := vmm.New(cm, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		defer vm.Close()
		_, err := vm.Run(ctx)
		done <- err
	}()
	return ln.Addr().String(), done, cancel
}

// BenchmarkRecordEcho measures the echo server under load: each op is one
// request of 64 bytes and its echo, over one connection, with and without
// recording; it reports log bytes per request and per second.
func BenchmarkRecordEcho(b *testing.B) {
	cm, err := wasm.Compile(guesttest.Build(b, "wasi-echo"), guesttest.Config())
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"exec", "record"} {
		b.Run(mode, func(b *testing.B) {
			var sink countSink
			var s vmm.Sink
			if mode == "record" {
				s = &sink
			}
			addr, done, cancel := startEcho(b, cm, 1, s)
			defer cancel()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, 64)
			buf := make([]byte, 64)
			b.ResetTimer()
			start := time.Now()
			before := sink.bytes()
			for range b.N {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			logged := sink.bytes() - before
			c.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if mode == "record" {
				b.ReportMetric(float64(logged)/float64(b.N), "logB/req")
				b.ReportMetric(float64(logged)/time.Since(start).Seconds(), "logB/s")
			}
		})
	}
}

// BenchmarkRecordIdle measures the log an idle server produces: the echo
// guest waiting for a connection for one second per op.
func BenchmarkRecordIdle(b *testing.B) {
	cm, err := wasm.Compile(guesttest.Build(b, "wasi-echo"), guesttest.Config())
	if err != nil {
		b.Fatal(err)
	}
	var sink countSink
	addr, done, cancel := startEcho(b, cm, 1, &sink)
	defer cancel()
	time.Sleep(200 * time.Millisecond) // past start-up
	b.ResetTimer()
	before, entries := sink.bytes(), sink.entries()
	for range b.N {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	logged := sink.bytes() - before
	b.ReportMetric(float64(logged)/float64(b.N), "logB/s")
	b.ReportMetric(float64(sink.entries()-entries)/float64(b.N), "entries/s")
	// Let the guest finish: one connection, closed at once.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
