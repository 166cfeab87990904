package client_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"ftvm/client"
	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/host"
	"ftvm/storage"
)

// A session with the counter guest of a VM that runs on a pair of hosts:
// here two hosts in this process, sharing a directory, as `ftvm run`
// starts them. The connection Dial returns would outlive the primary's
// host: the session resumes with the backup once it takes over.
func Example() {
	shared, err := os.MkdirTemp("", "ftvm-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(shared)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	defer func() { cancel(); <-done; <-done }()
	for _, name := range []string{"h1", "h2"} {
		h, err := host.New(host.Config{Shared: shared, Name: name})
		if err != nil {
			log.Fatal(err)
		}
		go func() { h.Run(ctx); done <- struct{}{} }()
	}
	dir, err := storage.Open(shared)
	if err != nil {
		log.Fatal(err)
	}
	for hs, _ := dir.Hosts(); len(hs) < 2; hs, _ = dir.Hosts() {
		time.Sleep(10 * time.Millisecond) // the hosts registering
	}
	// The guest's listener needs a fixed port, which the backup takes
	// over; the client does not use it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	spec := storage.VMSpec{Name: "counter", Args: []string{defaultguest.Name}, Listeners: []string{addr}, Primary: "h1", Backup: "h2"}
	if _, _, err := host.StartVM(dir, spec, defaultguest.Counter(), time.Now()); err != nil {
		log.Fatal(err)
	}

	// Dial waits (up to Options.Timeout) for the VM's primary to serve.
	conn, err := client.Dial(ctx, shared, "counter", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for range 3 {
		fmt.Fprintf(conn, "inc\n")
		reply, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(reply)
	}
	// Output:
	// 1
	// 2
	// 3
}
