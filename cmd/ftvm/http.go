package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"ftvm/host"
	"ftvm/internal/dashboard"
)

// listenHTTP binds a host's HTTP address, if it has one (addr not "").
func listenHTTP(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	return ln, nil
}

// serveHTTP serves h's metrics (/metrics) and the cluster's dashboard (/)
// on ln until ctx is done, and with withPprof its Go profiles; it returns once the server has stopped.
func serveHTTP(ctx context.Context, ln net.Listener, h *host.Host, name string, withPprof bool, log *slog.Logger) error {
	dash := dashboard.New(h.Store(), name, log)
	dash.DeferWhile(h.TakingOver)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h.MetricsHandler())
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", dash)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// The dashboard's event streams end with ctx.
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go dash.Run(ctx)
	log.Info("http", "host", name, "dashboard", "http://"+ln.Addr().String()+"/", "metrics", "http://"+ln.Addr().String()+"/metrics")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}
