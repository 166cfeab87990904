package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"ftvm/internal/guesttest"
)

// envScreenshot, set to 1, makes TestDashboardShowsFailover write its
// screenshot to docs/dashboard.png too (for the README).
const envScreenshot = "FTVM_DASHBOARD_SCREENSHOT"

// chromium returns the path of Chromium, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium; scripts/test installs it): the dashboard's browser test needs it")
	return ""
}

// waitJS evaluates expr in the page until it is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			last, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
			t.Fatalf("the page never showed %s (%v); it shows:\n%s", what, err, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardShowsFailover runs ftvm run, opens the dashboard of its
// spare host h3 in headless Chromium, checks that it shows the pair, kills
// the primary's host and checks that the same page, not reloaded, shows
// the failover and the backup's claim in its timeline, and then the new
// backup cloned onto h3.
func TestDashboardShowsFailover(t *testing.T) {
	chrome := chromium(t)
	bin := ftvmBinary(t)
	listen := guesttest.FreeAddr(t)
	// The browser starts first, as it loads the CPU a while; and a
	// host silent for less than 3 s is not taken for failed, so that a
	// busy machine does not fail the pair over before the test does. A
	// killed host's channel ends at once, which the gone timeout (a few
	// heartbeats) tells.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmd := exec.Command(bin, "run", "--no-restart", "--timeout", "3s", "--listen", listen)
	cmd.Dir = t.TempDir()
	var out guesttest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("ftvm run:\n%s", out.String())
		}
	})

	// ftvm run prints the dashboards' addresses and the hosts' pids.
	dashRE := regexp.MustCompile(`host h3: dashboard (http://\S+/) `)
	pidRE := regexp.MustCompile(`host h1 is pid (\d+)`)
	var url string
	var h1 int
	deadline := time.Now().Add(30 * time.Second)
	for url == "" || h1 == 0 {
		if m := dashRE.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		}
		if m := pidRE.FindStringSubmatch(out.String()); m != nil {
			h1, _ = strconv.Atoi(m[1])
		}
		select {
		case <-done:
			t.Fatalf("ftvm run ended:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ftvm run printed no dashboard:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Some traffic for the charts, until the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
				c.SetDeadline(time.Now().Add(2 * time.Second))
				fmt.Fprintf(c, "inc\n")
				_, _ = c.Read(make([]byte, 64))
				c.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	const card = `document.querySelector('article.vm[data-vm="ft-counter"]')`
	waitJS(t, bctx, "the protected pair h1, h2",
		`(c => !!c && c.dataset.primary === "h1" && c.dataset.backup === "h2" && c.dataset.generation === "1" && c.dataset.protected === "true")(`+card+`)`)
	// A mark that a reload would lose.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.ftvmTestMark = 42; true`)); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(h1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitJS(t, bctx, "the failover to h2",
		`(c => !!c && c.dataset.primary === "h2" && Number(c.dataset.generation) >= 2)(`+card+`)`)
	waitJS(t, bctx, "the failover in the timeline",
		`!!document.querySelector('#timeline li[data-kind="went live"][data-host="h2"]') && !!document.querySelector('#timeline li[data-kind="claim won"][data-host="h2"]')`)
	waitJS(t, bctx, "h1 dead in the hosts table", `!!document.querySelector('#hosts tr[data-host="h1"][data-alive="false"]')`)
	waitJS(t, bctx, "h2's engine tier in the hosts table", `/^(interp|compiler)$/.test(document.querySelectorAll('#hosts tr[data-host="h2"] td')[5].textContent)`)
	// Redundancy restored: h3, the spare, is the new backup.
	waitJS(t, bctx, "the new backup h3",
		`(c => !!c && c.dataset.primary === "h2" && c.dataset.backup === "h3" && c.dataset.protected === "true")(`+card+`)`)
	waitJS(t, bctx, "the clone in the timeline", `!!document.querySelector('#timeline li[data-kind="clone done"]')`)
	if mark, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.ftvmTestMark || 0`)); err != nil || mark != 42 {
		t.Fatalf("the page was reloaded (mark %d, %v)", mark, err)
	}

	docs := os.Getenv(envScreenshot) == "1"
	if docs {
		// For the README: let the charts fill a little more.
		time.Sleep(20 * time.Second)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if docs {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
