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
		c := newCluster(b)
		for _, h := range []string{"h1", "h2", "h3"} {
			c.startHost(h)
		}
		addr := guesttest.FreeAddr(b)
		c.startVM("mem", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
			Args: []string{"ft-mem", strconv.Itoa(mib), strconv.Itoa(pages)}})
		get(b, addr, 60*time.Second) // the guest has filled its memory
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
