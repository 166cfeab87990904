package host_test

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// BenchmarkClone measures live clones of the ft-mem guest (a memory of
// 16, 64 or 256 MiB, idle or rewriting 4 or 16 of its 4 KiB pages at each
// turn of its loop, about a thousand turns a second when idle) onto a spare
// host, after its backup's host was killed: the final pause, the rounds,
// the bytes sent and the clone's time, as the primary logs them; and the
// time from the kill to the VM being protected again.
//
//	go test ./host -run '^$' -bench BenchmarkClone -benchtime 1x
func BenchmarkClone(b *testing.B) {
	for _, mib := range []int{16, 64, 256} {
		for _, pages := range []int{0, 4, 16} {
			b.Run(fmt.Sprintf("%dMiB/rewrite-%d", mib, pages), func(b *testing.B) { benchClone(b, mib, pages, "h2") })
		}
	}
}

// BenchmarkProtectedAgain measures, for ft-mem with 64 MiB rewriting 4
// pages a turn, the time from a SIGKILL of the primary's host to the VM
// being protected again: detection, the backup going live, and its clone
// onto a spare.
//
//	go test ./host -run '^$' -bench BenchmarkProtectedAgain -benchtime 3x
func BenchmarkProtectedAgain(b *testing.B) {
	benchClone(b, 64, 4, "h1")
}

var cloneDone = regexp.MustCompile(`clone done: protected again.* pause=(\S+) rounds=(\d+) bytes=(\d+) took=(\S+)`)

func benchClone(b *testing.B, mib, pages int, kill string) {
	guest := memGuest(b)
	var pauses, clones, protects []time.Duration
	var rounds, sent []float64
	for range b.N {
		b.StopTimer()
		c := memCluster(b, guest, mib, pages)
		gen := c.owner("mem").Generation
		b.StartTimer()
		killed := time.Now()
		c.signal(kill, syscall.SIGKILL)
		o := c.protected("mem", gen, 5*time.Minute)
		protected := time.Since(killed)
		b.StopTimer()
		m := cloneDone.FindStringSubmatch(c.hosts[o.Host].logs.String())
		if m == nil {
			b.Fatalf("no clone in %s's log", o.Host)
		}
		pause, _ := time.ParseDuration(m[1])
		took, _ := time.ParseDuration(m[4])
		r, _ := strconv.ParseFloat(m[2], 64)
		n, _ := strconv.ParseFloat(m[3], 64)
		pauses, clones, protects = append(pauses, pause), append(clones, took), append(protects, protected)
		rounds, sent = append(rounds, r), append(sent, n/(1<<20))
	}
	b.ReportMetric(float64(median(pauses).Microseconds())/1000, "pause-ms")
	b.ReportMetric(float64(median(clones).Milliseconds()), "clone-ms")
	b.ReportMetric(float64(median(protects).Milliseconds()), "kill-to-protected-ms")
	b.ReportMetric(median(rounds), "rounds")
	b.ReportMetric(median(sent), "sent-MiB")
	// The comparison, from the same run: a clone that stopped the guest
	// and copied its memory at the rate this one achieved would pause it
	// this long.
	rate := median(sent) / median(clones).Seconds()
	b.ReportMetric(float64(mib)/rate*1000, "stop-and-copy-ms")
}

// BenchmarkSwitchover measures a switchover (ftvm move --primary to the
// backup) of the ft-mem guest (64 or 256 MiB, rewriting 4 pages a turn):
// the time from the request to the VM protected with the roles swapped,
// and the old primary's follow (its paused VM turned into a replaying one,
// as it logs it). The comparison, from the same run: a live clone of the
// same VM onto a spare (a move of its backup), which is how long the new
// primary would run without a backup if the old primary left instead of
// following.
//
//	go test ./host -run '^$' -bench BenchmarkSwitchover -benchtime 3x
func BenchmarkSwitchover(b *testing.B) {
	for _, mib := range []int{64, 256} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) { benchSwitchover(b, mib) })
	}
}

var (
	followed   = regexp.MustCompile(`following the new primary as its backup.* took=(\S+)`)
	backupMove = regexp.MustCompile(`clone done: the backup moved.* took=(\S+)`)
)

func benchSwitchover(b *testing.B, mib int) {
	guest := memGuest(b)
	var switches, follows, clones []time.Duration
	for range b.N {
		b.StopTimer()
		c := memCluster(b, guest, mib, 4)
		c.move("mem", "h3", false)
		o := c.protected("mem", c.owner("mem").Generation-1, time.Minute)
		m := backupMove.FindStringSubmatch(c.hosts["h1"].logs.String())
		if m == nil {
			b.Fatal("no clone in h1's log")
		}
		took, _ := time.ParseDuration(m[1])
		clones = append(clones, took)
		b.StartTimer()
		start := time.Now()
		c.move("mem", "h3", true)
		o = c.protected("mem", o.Generation, time.Minute)
		switches = append(switches, time.Since(start))
		b.StopTimer()
		if o.Host != "h3" || o.Backup != "h1" {
			b.Fatalf("after the switchover: primary %s, backup %s; want h3, h1", o.Host, o.Backup)
		}
		m = followed.FindStringSubmatch(c.hosts["h1"].logs.String())
		if m == nil {
			b.Fatal("no follow in h1's log")
		}
		took, _ = time.ParseDuration(m[1])
		follows = append(follows, took)
	}
	b.ReportMetric(float64(median(switches).Microseconds())/1000, "switchover-ms")
	b.ReportMetric(float64(median(follows).Microseconds())/1000, "follow-ms")
	b.ReportMetric(float64(median(clones).Milliseconds()), "clone-to-spare-ms")
}

// memCluster starts three hosts and the ft-mem guest (mib MiB, rewriting
// pages a turn) on h1 and h2 as VM "mem", and returns once it has filled
// its memory.
func memCluster(b *testing.B, guest []byte, mib, pages int) *cluster {
	c := newCluster(b)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(b)
	c.startVM("mem", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
		Args: []string{"ft-mem", strconv.Itoa(mib), strconv.Itoa(pages)}})
	get(b, addr, 60*time.Second) // the guest has filled its memory
	return c
}
