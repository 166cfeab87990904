package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"ftvm/client"
	"ftvm/session"
)

func runProxy(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	name := fs.String("name", "", "the `VM` whose guest the clients reach (required)")
	listen := fs.String("listen", "", "TCP `HOST:PORT` where the clients connect (required; port 0 picks one)")
	to := fs.String("to", "", "the guest listener `ADDR` (as ftvm start --listen gave it) when the VM has several")
	timeout := fs.Duration("timeout", session.DefaultTimeout, "how long a session keeps trying to reach the VM's primary (across a failover) before its client's connection is reset")
	fs.Usage = usageFunc(fs, env.stderr, "proxy --shared DIR --name VM --listen HOST:PORT [--to ADDR] [--timeout 30s]",
		"Runs a local gateway for unmodified TCP clients: each connection accepted on --listen\n"+
			"becomes a session with the VM's guest, through its current primary. When the primary\n"+
			"fails, the session resumes with the host that takes over: the client and the guest\n"+
			"each see one unbroken connection, every byte once, in order. Run it beside the clients\n"+
			"(it fails with them, never with the servers). Closing a client's connection ends its\n"+
			"session; the proxy's own end (SIGINT, SIGTERM, a crash) ends its sessions as a client\n"+
			"crash would. Without the proxy, clients that connect to a VM's --listen address\n"+
			"directly see their connections reset at a failover.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	var missing []string
	for _, f := range []struct{ flag, v string }{{"--shared (or --store)", *shared}, {"--name", *name}, {"--listen", *listen}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	switch {
	case len(missing) > 0:
		fmt.Fprintf(env.stderr, "ftvm proxy: %s required\n\n", strings.Join(missing, ", "))
		fs.Usage()
		return 2
	case fs.NArg() != 0:
		fmt.Fprintf(env.stderr, "ftvm proxy: unexpected arguments: %s\n\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2
	case *timeout <= 0:
		fmt.Fprintf(env.stderr, "ftvm proxy: --timeout %v: must be positive\n", *timeout)
		return 2
	}
	cfg, store, err := client.Config(*shared, *name, &client.Options{Listener: *to, Timeout: *timeout, Store: sf.options()})
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm proxy: %v\n", err)
		return 1
	}
	defer store.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm proxy: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(env.stderr, nil))
	cfg.Logger = log
	switch addr, err := cfg.Resolve(ctx); {
	case err == nil:
		log.Info("proxy up", "listen", ln.Addr().String(), "vm", *name, "primary_sessions", addr)
	case errors.Is(err, session.ErrRefused):
		log.Warn("proxy up, but the VM does not run: connections are closed until it runs again", "listen", ln.Addr().String(), "vm", *name, "err", err)
	default:
		log.Warn("proxy up, but the VM has no primary now: connections wait for one", "listen", ln.Addr().String(), "vm", *name, "err", err)
	}
	start := time.Now()
	if err := session.Proxy(ctx, ln, cfg); err != nil {
		fmt.Fprintf(env.stderr, "ftvm proxy: %v\n", err)
		return 1
	}
	log.Info("proxy down", "up_for", time.Since(start).Round(time.Second).String())
	return 0
}
