package host_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// BenchmarkIdleBesideBusy runs 50 idle protected counters (the embedded C
// guest) and 4 VMs that compute without end (ft-spin) on one pair of
// hosts, and asks the counters for their value, one request at a time
// round the 50, for 10 s: how long a request to an idle service takes
// while busy guests share its hosts (p50, p99 and the slowest, in ms),
// and how many requests got no answer within 5 s.
func BenchmarkIdleBesideBusy(b *testing.B) {
	spin := guesttest.Build(b, "ft-spin")
	for range b.N {
		c := newCluster(b)
		c.startHostWith("h1", &lineCounter{})
		c.startHostWith("h2", &lineCounter{})
		idle := startVMs(b, c, defaultguest.Counter(), 50)
		var busy []string
		for i := range 4 {
			name := fmt.Sprintf("spin%d", i)
			spec := storage.VMSpec{Name: name, Args: []string{"ft-spin", strconv.Itoa(busyEvery), name}}
			if _, _, err := host.StartVM(c.store, spec, spin, time.Now()); err != nil {
				b.Fatal(err)
			}
			busy = append(busy, name)
		}
		waitProtected(b, c, append(slices.Clone(idle), busy...), 2*time.Minute)
		time.Sleep(2 * time.Second) // the busy ones at full speed
		clients := make([]*counterClient, len(idle))
		for i, vm := range idle {
			spec, err := c.store.VM(vm)
			if err != nil {
				b.Fatal(err)
			}
			clients[i] = &counterClient{lineClient{addr: spec.Listeners[0]}}
			defer clients[i].close()
		}
		var took []time.Duration
		failed := 0
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			for _, cc := range clients {
				t0 := time.Now()
				if _, err := cc.do("get", 5*time.Second); err != nil {
					failed++
					cc.close()
					continue
				}
				took = append(took, time.Since(t0))
			}
		}
		if len(took) == 0 {
			b.Fatal("no request answered")
		}
		slices.Sort(took)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(float64(len(took)), "answered")
		b.ReportMetric(float64(failed), "unanswered")
		b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
		b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
		b.ReportMetric(ms(took[len(took)-1]), "max-ms")
	}
}
