package host_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
)

// threadNices returns the nice value of each of a process's threads.
func threadNices(t *testing.T, pid int) map[int]int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	nices := make(map[int]int)
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		// The fields after the command's closing parenthesis start at the
		// state (field 3); nice is field 19.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 17 {
			t.Fatalf("%s: short stat %q", task.Name(), s)
		}
		n, err := strconv.Atoi(f[16])
		if err != nil {
			t.Fatal(err)
		}
		tid, _ := strconv.Atoi(task.Name())
		nices[tid] = n
	}
	return nices
}

// niced returns how many of a process's threads run at its usual nice
// value plus raise: the usual one is that of most of its threads.
func niced(t *testing.T, pid, raise int) int {
	nices := threadNices(t, pid)
	count := make(map[int]int)
	for _, v := range nices {
		count[v]++
	}
	usual := 0
	for v, n := range count {
		if n > count[usual] {
			usual = v
		}
	}
	return count[usual+raise]
}

// TestBackupReplayInBackground: a backup's replay runs on one thread of
// its own at nice +ReplayNice, the primary's guest at the host's priority,
// and a backup that goes live runs its guest at the host's priority. No
// privilege is needed: nice values are only ever raised.
func TestBackupReplayInBackground(t *testing.T) {
	raise := host.DefaultReplayNice
	c := newCluster(t)
	addr := counterPair(t, c, false)
	l := startLoad(addr, 4)
	l.waitReplies(t, 50, 20*time.Second)
	p1, p2 := c.hosts["h1"].cmd.Process.Pid, c.hosts["h2"].cmd.Process.Pid
	c.waitFor(10*time.Second, "the backup's replay thread in the background", func() bool { return niced(t, p2, raise) == 1 })
	if n := niced(t, p1, raise); n != 0 {
		t.Fatalf("the primary's host has %d threads in the background: %v", n, threadNices(t, p1))
	}
	c.signal("h1", syscall.SIGKILL)
	l.waitReplies(t, 50, 30*time.Second)
	l.finish()
	if o := c.owner("counter"); o.Host != "h2" {
		t.Fatalf("owner after failover: %+v", o)
	}
	if n := niced(t, p2, raise); n != 0 {
		t.Fatalf("the backup went live with %d threads still in the background: %v", n, threadNices(t, p2))
	}
}
