// Command etcdmember runs one member of an etcd cluster for the tests of
// package netns, which run each member in a network namespace of its own
// (ip netns exec), as on a server of its own.
//
// It is etcd's own server, go.etcd.io/etcd/server/v3's embed (what
// internal/etcdtest runs inside test processes), rather than Debian's
// etcd-server: it is the very version of the client that ftvm links
// (go.mod), it needs nothing installed beyond the Go toolchain the tests
// already need, it builds from the module cache offline, and the tests can
// tune what a test run wants (fsync off, short elections) with the same
// Config the other tests use.
//
//	etcdmember --name e1 --data-dir DIR \
//	    --listen-peer http://198.18.0.11:2380 --listen-client http://198.18.0.11:2379 \
//	    --initial-cluster e1=http://198.18.0.11:2380,e2=http://198.18.0.12:2380
//
// It prints "etcdmember NAME ready" once the member serves clients (the
// cluster has a leader and the member has joined it), and runs until
// SIGTERM or SIGINT.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := embed.NewConfig()
	var peer, client string
	flag.StringVar(&cfg.Name, "name", "", "this member's `NAME` in the initial cluster (required)")
	flag.StringVar(&cfg.Dir, "data-dir", "", "the member's data `DIR` (required)")
	flag.StringVar(&peer, "listen-peer", "", "the peer `URL` to listen on and advertise (required)")
	flag.StringVar(&client, "listen-client", "", "the client `URL` to listen on and advertise (required)")
	flag.StringVar(&cfg.InitialCluster, "initial-cluster", "", "every member: `NAME=PEERURL,...` (required)")
	flag.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", cfg.InitialClusterToken, "the cluster's `TOKEN`, the same on every member")
	flag.UintVar(&cfg.TickMs, "heartbeat-interval", cfg.TickMs, "raft's heartbeat interval in `ms`")
	flag.UintVar(&cfg.ElectionMs, "election-timeout", cfg.ElectionMs, "raft's election timeout in `ms`")
	// A member killed with SIGKILL loses nothing without fsync: what it
	// wrote is in the kernel's page cache. Only a machine's crash loses
	// it, which the tests do not do.
	flag.BoolVar(&cfg.UnsafeNoFsync, "unsafe-no-fsync", false, "never fsync (faster; loses data on a machine's crash)")
	flag.StringVar(&cfg.LogLevel, "log-level", "error", "etcd's log `LEVEL`: debug, info, warn, error, panic or fatal")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if cfg.Name == "" || cfg.Dir == "" || peer == "" || client == "" || cfg.InitialCluster == "" {
		flag.Usage()
		return errors.New("--name, --data-dir, --listen-peer, --listen-client and --initial-cluster are required")
	}
	p, err := url.Parse(peer)
	if err != nil {
		return fmt.Errorf("--listen-peer: %w", err)
	}
	c, err := url.Parse(client)
	if err != nil {
		return fmt.Errorf("--listen-client: %w", err)
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*c}, []url.URL{*c}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", cfg.Name, err)
	}
	defer e.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// The other members may start long after this one; a member waits
	// for them as long as the test lets it.
	select {
	case <-e.Server.ReadyNotify():
		fmt.Printf("etcdmember %s ready\n", cfg.Name)
	case err := <-e.Err():
		return fmt.Errorf("member %s: %w", cfg.Name, err)
	case <-stop:
		return nil
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("member %s not ready after 10 minutes", cfg.Name)
	}
	select {
	case err := <-e.Err():
		return fmt.Errorf("member %s: %w", cfg.Name, err)
	case <-stop:
		return nil
	}
}
