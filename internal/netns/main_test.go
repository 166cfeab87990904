package netns_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/internal/guesttest"
)

// helperEnv makes the test binary a helper process (see helper) instead
// of running the tests: the harness's own tests run it inside namespaces.
const helperEnv = "FTVM_NETNS_HELPER"

// binDir holds the binaries the tests build (ftvm, etcdmember, the
// guest), once per test process; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		if err := helper(h); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var err error
	if binDir, err = os.MkdirTemp("", "ftvm-netns-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// helper runs the helper process spec says: "echo ADDR" serves a TCP echo
// server on ADDR forever; "dial ADDR" sends a line to ADDR and prints
// "ok" if it comes back within a second, else "fail: WHY".
func helper(spec string) error {
	verb, addr, _ := strings.Cut(spec, " ")
	switch verb {
	case "echo":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return fmt.Errorf("accept: %w", err)
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	case "dial":
		if err := echo(addr); err != nil {
			fmt.Println("fail:", err)
		} else {
			fmt.Println("ok")
		}
		return nil
	}
	return fmt.Errorf("unknown helper %q", spec)
}

// echo sends a line to the echo server at addr and checks that it comes
// back within a second.
func echo(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return fmt.Errorf("echoed %q", line)
	}
	return nil
}

// built is what buildBinaries made.
type built struct {
	ftvm, etcd, guest string
	err               error
}

var buildOnce sync.Once
var bins built

// binaries builds, once per test process, cmd/ftvm, the etcd member and
// the counter guest (testdata/guests/ft-counter, as the host package's
// tests run it), as host/cluster_test.go's ftvmBinary does.
func binaries(t testing.TB) built {
	t.Helper()
	buildOnce.Do(func() {
		bins.ftvm = filepath.Join(binDir, "ftvm")
		bins.etcd = filepath.Join(binDir, "etcdmember")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, b := range [][2]string{{bins.ftvm, "ftvm/cmd/ftvm"}, {bins.etcd, "ftvm/internal/netns/etcdmember"}} {
			wg.Go(func() {
				if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && bins.err == nil {
				bins.err = err
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	guestOnce.Do(func() {
		// guesttest.Build skips the test (no toolchain) or fails it: it
		// must run in a test's goroutine, which this is.
		wasm := guesttest.Build(t, "ft-counter")
		path := filepath.Join(binDir, "ft-counter.wasm")
		if err := os.WriteFile(path, wasm, 0o644); err != nil {
			t.Fatalf("write the guest: %v", err)
		}
		guestPath = path
	})
	if guestPath == "" {
		t.Fatal("the counter guest was not built (see the first test that tried)")
	}
	b := bins
	b.guest = guestPath
	return b
}

var guestOnce sync.Once
var guestPath string
