package host_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

var journalOnce sync.Once
var journalWasm []byte

func journalGuest(t testing.TB) []byte {
	journalOnce.Do(func() { journalWasm = guesttest.Build(t, "ft-journal") })
	return journalWasm
}

// journalReply is a reply a client of the ft-journal guest saw: the
// number the guest gave its payload.
type journalReply struct {
	n       uint64
	payload string
}

// journalLoad is a set of clients sending the ft-journal guest a new
// payload per request until stopped. A request whose reply a client did not
// see is never sent again: it may or may not have been performed. A client
// that gets a reply other than a number (the guest answers "err ..." to
// every request once a step failed) records it and stops.
type journalLoad struct {
	mu      sync.Mutex
	seen    []journalReply
	bad     []string // replies that are not a number, one per client at most
	unknown int      // requests sent that got no reply: performed or not
	refused int      // requests never sent: the dial failed
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startJournalLoad(addr string, clients int) *journalLoad {
	l := &journalLoad{stop: make(chan struct{})}
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			lc := &lineClient{addr: addr}
			defer lc.close()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := fmt.Sprintf("c%d-%d", c, i)
				line, err := lc.do(p, 3*time.Second)
				var oe *net.OpError
				l.mu.Lock()
				switch n, perr := strconv.ParseUint(line, 10, 64); {
				case errors.As(err, &oe) && oe.Op == "dial":
					l.refused++
				case err != nil:
					l.unknown++
				case perr == nil:
					l.seen = append(l.seen, journalReply{n, p})
				default:
					l.bad = append(l.bad, fmt.Sprintf("client %d, request %s: %q", c, p, line))
					l.mu.Unlock()
					return
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

// waitReplies waits until n more replies than now have been seen; it gives
// up early once a client got a reply other than a number.
func (l *journalLoad) waitReplies(n int, max time.Duration) error {
	l.mu.Lock()
	target := len(l.seen) + n
	l.mu.Unlock()
	deadline := time.Now().Add(max)
	for {
		l.mu.Lock()
		got, bad := len(l.seen), len(l.bad)
		l.mu.Unlock()
		switch {
		case bad > 0:
			return fmt.Errorf("%d replies (want %d), and a client got an error reply", got, target)
		case got >= target:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%d replies, want %d within %v", got, target, max)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *journalLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// finish stops the clients and returns every numbered reply they saw and
// every other reply.
func (l *journalLoad) finish() (seen []journalReply, bad []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]journalReply(nil), l.seen...), append([]string(nil), l.bad...)
}

// journalGet asks the guest for the number of its last request, retrying
// until a host serves it.
func journalGet(t *testing.T, addr string, max time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(max)
	lc := &lineClient{addr: addr}
	defer lc.close()
	for {
		line, err := lc.do("get", 2*time.Second)
		if err == nil {
			v, perr := strconv.ParseUint(line, 10, 64)
			if perr != nil {
				t.Fatalf("get: reply %q", line)
			}
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("get from %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailoverJournalExactlyOnce: clients send the ft-journal guest
// requests, each of which makes a lock directory, writes a state file and
// renames it into place, removes the lock and appends a line to a journal;
// the primary's host is killed (SIGKILL) at a random moment, and the
// clients reconnect to the survivor and go on with new requests (never
// resending one whose reply they missed). Whatever call the primary died
// in, the survivor must perform each effect exactly once: no mkdir, rename
// or remove that fails because it already happened or has yet to, and a
// journal with one line per request, numbered without gaps or repeats,
// agreeing with every reply a client saw.
func TestFailoverJournalExactlyOnce(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 3
	}
	for i := range runs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := newCluster(t)
			c.startHost("h1")
			c.startHost("h2")
			addr := guesttest.FreeAddr(t)
			c.startVM("journal", journalGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
				Disk: true, Args: []string{"ft-journal", "/disk"}})
			disk := filepath.Join(c.dir, "vms", "journal", "disk")
			l := startJournalLoad(addr, 4)
			if err := l.waitReplies(20, 20*time.Second); err != nil {
				_, bad := l.finish()
				t.Fatalf("before the kill: %v %q", err, bad)
			}
			time.Sleep(randDuration(t, 0, 400*time.Millisecond))
			before := l.count()
			c.signal("h1", syscall.SIGKILL)
			// The survivor must serve every client again.
			waitErr := l.waitReplies(40, 30*time.Second)
			seen, bad := l.finish()
			t.Logf("replies %d (%d before the kill), unanswered %d, dials refused %d",
				len(seen), before, l.unknown, l.refused)
			for _, b := range bad {
				t.Errorf("%s: a step failed on the survivor (an effect performed twice, or not at all)", b)
			}
			if o := c.owner("journal"); o.Host != "h2" || o.Generation != 2 {
				t.Errorf("owner after failover: %+v, want h2 in generation 2", o)
			}
			if len(bad) > 0 {
				// The guest is broken and answers "get" with an error
				// too: check the journal without its final number.
				checkJournal(t, disk, seen, 0, false)
			} else {
				if waitErr != nil {
					t.Fatal(waitErr)
				}
				final := journalGet(t, addr, 10*time.Second)
				t.Logf("final %d", final)
				checkJournal(t, disk, seen, final, true)
			}
			if t.Failed() {
				t.Logf("h2 settled:\n%s", grepLines(c.hosts["h2"].logs.String(), "settled"))
			}
		})
	}
}

// checkJournal checks the ft-journal guest's disk after a run: line k of
// the journal is "k PAYLOAD", no payload appears twice, every reply seen
// names its own line, and no lock directory is left; and, if the guest's
// last request number final is known, the journal has final lines and the
// state file holds final. On failure it shows the journal around the first
// bad line.
func checkJournal(t *testing.T, disk string, seen []journalReply, final uint64, known bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(disk, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if text != "" && !strings.HasSuffix(text, "\n") {
		t.Errorf("the journal ends in a partial line")
	}
	var lines []string
	if text != "" {
		lines = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	}

	// A line applied twice puts every later line out of step: report the
	// first few problems and count the rest.
	const maxReported = 8
	problems, firstBad := 0, -1
	bad := func(k int, format string, args ...any) {
		t.Helper()
		if problems++; problems <= maxReported {
			t.Errorf("journal line %d: "+format, append([]any{k + 1}, args...)...)
		}
		if firstBad < 0 || k < firstBad {
			firstBad = k
		}
	}
	payloadAt := map[string]int{} // payload -> line index
	for k, line := range lines {
		num, payload, ok := strings.Cut(line, " ")
		if !ok || payload == "" || strings.Contains(payload, " ") {
			bad(k, "%q is not \"N PAYLOAD\"", line)
			continue
		}
		if num != strconv.Itoa(k+1) {
			bad(k, "%q: number %s, want %d (a request applied twice, lost or out of order)", line, num, k+1)
		}
		if prev, dup := payloadAt[payload]; dup {
			bad(k, "%q: payload %s is also on line %d (a request applied twice)", line, payload, prev+1)
		} else {
			payloadAt[payload] = k
		}
	}
	for _, r := range seen {
		switch want := fmt.Sprintf("%d %s", r.n, r.payload); {
		case r.n == 0 || r.n > uint64(len(lines)):
			if problems++; problems <= maxReported {
				t.Errorf("a client saw %d for %s, but the journal has %d lines", r.n, r.payload, len(lines))
			}
		case lines[r.n-1] != want:
			bad(int(r.n-1), "%q, but a client saw the reply %d for %s", lines[r.n-1], r.n, r.payload)
		}
	}
	if problems > maxReported {
		t.Errorf("... and %d more problems in the journal", problems-maxReported)
	}
	if known {
		if uint64(len(lines)) != final {
			t.Errorf("the journal has %d lines, the guest's last request is %d", len(lines), final)
			if firstBad < 0 {
				firstBad = min(len(lines), int(final))
			}
		}
		if uint64(len(seen)) > final {
			t.Errorf("%d replies seen, final %d", len(seen), final)
		}
		if st, err := os.ReadFile(filepath.Join(disk, "state")); err != nil {
			t.Errorf("state: %v", err)
		} else if got := strings.TrimSpace(string(st)); got != strconv.FormatUint(final, 10) {
			t.Errorf("state holds %q, want %d", st, final)
		}
		if _, err := os.Lstat(filepath.Join(disk, "state.tmp")); !os.IsNotExist(err) {
			t.Errorf("state.tmp left behind: %v", err)
		}
	}
	if locks, err := filepath.Glob(filepath.Join(disk, "lock-*")); err != nil || len(locks) > 0 {
		t.Errorf("lock directories left: %q %v", locks, err)
	}
	if firstBad >= 0 || t.Failed() {
		at := firstBad
		if at < 0 {
			at = len(lines) - 1
		}
		lo, hi := max(0, at-5), min(len(lines), at+6)
		var sb strings.Builder
		for k := lo; k < hi; k++ {
			mark := "  "
			if k == firstBad {
				mark = "> "
			}
			fmt.Fprintf(&sb, "%s%5d | %s\n", mark, k+1, lines[k])
		}
		t.Logf("journal lines %d to %d of %d:\n%s", lo+1, hi, len(lines), sb.String())
	}
}
