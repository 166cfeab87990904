package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"ftvm/client"
	"ftvm/session"
)

func runProxy(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	shared := fs.String("shared", "", "shared storage `DIR` (required)")
	name := fs.String("name", "", "the `VM` whose guest the clients reach (required)")
	listen := fs.String("listen", "", "TCP `HOST:PORT` where the clients connect (required; port 0 picks one)")
	to := fs.String("to", "", "the guest listener `ADDR` (as ftvm start --listen gave it) when the VM has several")
	timeout := fs.Duration("timeout", session.DefaultTimeout, "how long a session keeps trying to reach the VM's primary (across a failover) before its client's connection is reset")
	fs.Usage = usageFunc(fs, env.stderr, "proxy --shared DIR --name VM --listen HOST:PORT [--to ADDR]",
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
	if *shared == "" || *name == "" || *listen == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	cfg, err := client.Config(*shared, *name, &client.Options{Listener: *to, Timeout: *timeout})
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm proxy: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm proxy: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(env.stderr, nil))
	cfg.Logger = log
	if addr, err := cfg.Resolve(ctx); err == nil {
		log.Info("proxy up", "listen", ln.Addr().String(), "vm", *name, "primary_sessions", addr)
	} else {
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
