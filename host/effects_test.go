package host_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// effectsClient talks to the ft-effects guest: one request per line, one
// reply line per request.
type effectsClient struct{ lineClient }

// results asks the guest for the outcome of every request it performed,
// retrying until a host serves it.
func (ec *effectsClient) results(t *testing.T, max time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(max)
	for {
		first, err := ec.do("results", 2*time.Second)
		var lines []string
		for err == nil && first != "end" {
			lines = append(lines, first)
			var line string
			line, err = ec.r.ReadString('\n')
			first = strings.TrimSpace(line)
		}
		if err == nil {
			return lines
		}
		ec.close()
		if time.Now().After(deadline) {
			t.Fatalf("results from %s: %v", ec.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var effectsOnce sync.Once
var effectsWasm []byte

func effectsGuest(t *testing.T) []byte {
	effectsOnce.Do(func() { effectsWasm = guesttest.BuildC(t, "ft-effects") })
	if effectsWasm == nil {
		t.Skip("the C guest ft-effects could not be built")
	}
	return effectsWasm
}

// effectCase is one effect the ft-effects guest performs on request.
type effectCase struct {
	name   string
	method string   // the Host method the crash failpoints name
	setup  []string // requests answered before the crash is armed
	req    string   // the request the primary dies in
	check  func(t *testing.T, disk string)
}

func readDisk(t *testing.T, disk, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(disk, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantContent(name, want string) func(*testing.T, string) {
	return func(t *testing.T, disk string) {
		if got := readDisk(t, disk, name); got != want {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
}

func wantGone(name string) func(*testing.T, string) {
	return func(t *testing.T, disk string) {
		if _, err := os.Lstat(filepath.Join(disk, name)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it gone", name, err)
		}
	}
}

func wantMtime(name string) func(*testing.T, string) {
	return func(t *testing.T, disk string) {
		fi, err := os.Stat(filepath.Join(disk, name))
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Unix(1500000000, 2); !fi.ModTime().Equal(want) {
			t.Errorf("%s: modified at %v, want %v", name, fi.ModTime(), want)
		}
	}
}

var effectCases = []effectCase{
	{"append", "Pwrite", []string{"append a", "append b"}, "append c", wantContent("journal", "1 a\n2 b\n3 c\n")},
	{"pwrite", "Pwrite", []string{"pwrite 0 hello"}, "pwrite 5 world", wantContent("data", "helloworld")},
	{"truncate", "SetSize", []string{"pwrite 0 0123456789"}, "truncate 4", wantContent("data", "0123")},
	{"allocate", "Allocate", nil, "allocate 8192", func(t *testing.T, disk string) {
		if got := len(readDisk(t, disk, "data")); got != 8192 {
			t.Errorf("data has %d bytes, want 8192", got)
		}
	}},
	{"sync", "Sync", []string{"pwrite 0 synced"}, "sync", wantContent("data", "synced")},
	{"futimes", "SetTimes", nil, "futimes", wantMtime("data")},
	{"utimes", "PathSetTimes", []string{"create f"}, "utimes f", wantMtime("f")},
	{"create", "Open", []string{"create x"}, "create y", wantContent("y", "y")},
	{"create-excl", "Open", nil, "create-excl x", wantContent("x", "x")},
	{"mkdir", "Mkdir", nil, "mkdir d", func(t *testing.T, disk string) {
		if fi, err := os.Stat(filepath.Join(disk, "d")); err != nil || !fi.IsDir() {
			t.Errorf("d: %v, want a directory", err)
		}
	}},
	{"rmdir", "Rmdir", []string{"mkdir d"}, "rmdir d", wantGone("d")},
	{"unlink", "Unlink", []string{"create f"}, "unlink f", wantGone("f")},
	{"rename", "Rename", []string{"create f", "create g"}, "rename f g", func(t *testing.T, disk string) {
		wantGone("f")(t, disk)
		wantContent("g", "f")(t, disk)
	}},
	{"link", "Link", []string{"create f"}, "link f l", func(t *testing.T, disk string) {
		a, err1 := os.Stat(filepath.Join(disk, "f"))
		b, err2 := os.Stat(filepath.Join(disk, "l"))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			t.Errorf("f and l are not one file: %v, %v", err1, err2)
		}
	}},
	{"symlink", "Symlink", nil, "symlink target s", func(t *testing.T, disk string) {
		if got, err := os.Readlink(filepath.Join(disk, "s")); err != nil || got != "target" {
			t.Errorf("s links to %q (%v), want target", got, err)
		}
	}},
}

// TestEffectsExactlyOnceAtCrashPoints: the primary's host is killed at an
// exact point of an effect the guest performs for a request: just before
// it (the backup has everything it depends on), just after it (its entry
// not sent), and just after its entry was sent (not yet acknowledged). For
// every kind of effect and each point, the survivor's guest saw every
// request succeed exactly once (it checks each result itself), and the
// disk shows each effect applied exactly once.
func TestEffectsExactlyOnceAtCrashPoints(t *testing.T) {
	guest := effectsGuest(t)
	for _, ec := range effectCases {
		for _, point := range []string{"crash-before-effect", "crash-after-effect", "crash-after-send"} {
			t.Run(ec.name+"/"+point, func(t *testing.T) {
				t.Parallel()
				crashInEffect(t, guest, ec, point)
			})
		}
	}
}

func crashInEffect(t *testing.T, guest []byte, ec effectCase, point string) {
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	addr := guesttest.FreeAddr(t)
	c.startVM("effects", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
		Disk: true, Args: []string{"ft-effects", "/disk"}})
	cl := &effectsClient{lineClient{addr: addr}}
	defer cl.close()
	for _, r := range ec.setup {
		if got, err := cl.do(r, 10*time.Second); err != nil || got != "ok" {
			t.Fatalf("%s: %q, %v", r, got, err)
		}
	}
	c.failpoint("h1", point+"="+ec.method)
	got, err := cl.do(ec.req, 10*time.Second)
	switch {
	case err == nil && got != "ok":
		t.Fatalf("%s: %q", ec.req, got)
	case err == nil:
		// A reply can leave just before the kill after a send, if the
		// acknowledgement came first.
		t.Logf("%s answered before the primary died", ec.req)
	}
	<-c.hosts["h1"].done
	if st := c.hosts["h1"].cmd.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("h1 ended %v, want killed by its failpoint", st)
	}
	cl.close()
	results := cl.results(t, 30*time.Second)
	want := append(append([]string(nil), ec.setup...), ec.req)
	if len(results) != len(want) {
		t.Fatalf("the guest performed %q, want %q", results, want)
	}
	for i, r := range results {
		if w := fmt.Sprintf("%d %s: ok", i+1, want[i]); r != w {
			t.Errorf("result %q, want %q", r, w)
		}
	}
	if o := c.owner("effects"); o.Host != "h2" || o.Generation != 2 {
		t.Fatalf("owner after the crash: %+v, want h2 in generation 2", o)
	}
	ec.check(t, filepath.Join(c.dir, "vms", "effects", "disk"))
	if t.Failed() {
		t.Logf("h2 settled: %s", grepLines(c.hosts["h2"].logs.String(), "settled"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
