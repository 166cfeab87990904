package session_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"ftvm/session"
)

// serveEcho is a minimal host: one session per Open, with a guest that
// returns its input in upper case. A real host logs each read before it
// declares it safe, keeps sessions by ID for Resume, and restores them on
// a survivor.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			req, err := session.Accept(c)
			if err != nil {
				return // refused and closed
			}
			if req.Open == nil {
				session.Refuse(c, "unknown session")
				return
			}
			s := session.NewServerSession(session.NewID(), session.NewSecret(), 0)
			go func() {
				g := s.Guest()
				buf := make([]byte, 4096)
				for {
					n, err := g.Read(buf)
					s.SafeInput(s.State().Consumed) // logged: the client may drop it
					g.Write([]byte(strings.ToUpper(string(buf[:n]))))
					if err != nil {
						g.Close()
						return
					}
				}
			}()
			s.Attach(c, req)
		}()
	}
}

func ExampleDial() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go serveEcho(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := session.Dial(ctx, session.Config{
		// Where the VM's primary accepts sessions now: asked again at
		// every reconnection.
		Resolve: func(context.Context) (string, error) { return ln.Addr().String(), nil },
		Timeout: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "hello, guest")
	conn.(interface{ CloseWrite() error }).CloseWrite()
	reply, err := io.ReadAll(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: HELLO, GUEST
}
