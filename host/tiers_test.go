package host_test

import (
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
)

// TestFailoverAcrossTiers: a pair whose primary runs one engine tier and
// whose backup runs the other serves a counter under load; the primary is
// killed and the backup, having replayed the other tier's log, goes live
// with the counter intact. It then clones a new backup onto a spare of the
// first tier (every clone's memory is checked against the primary's), and
// when it is killed in turn that spare goes live: each tier has replayed
// the other's log and restored the other's clone. The tiers count
// instructions alike, so none of this depends on them.
func TestFailoverAcrossTiers(t *testing.T) {
	for _, tiers := range guesttest.TierPairs(t) {
		first, second := tiers[0].String(), tiers[1].String()
		t.Run(first+"-primary", func(t *testing.T) {
			c := newCluster(t)
			c.hostArgs = map[string][]string{
				"h1": {"--engine", first},
				"h2": {"--engine", second},
				"h3": {"--engine", first},
			}
			addr := counterPair(t, c, false)
			for name, tier := range map[string]string{"h1": first, "h2": second} {
				if l := grepLines(c.hosts[name].logs.String(), "engine="+tier); l == "" {
					t.Fatalf("host %s does not say it runs tier %s", name, tier)
				}
			}
			l := startLoad(addr, 4)
			l.waitReplies(t, 20, 20*time.Second)
			c.signal("h1", syscall.SIGKILL)
			l.waitReplies(t, 40, 30*time.Second)
			if o := c.owner("counter"); o.Host != "h2" || o.Generation != 2 {
				t.Fatalf("owner after the %s primary was killed: %+v, want h2 (%s) in generation 2", first, o, second)
			}

			c.startHost("h3")
			o := c.protected("counter", 2, time.Minute)
			if o.Host != "h2" || o.Backup != "h3" {
				t.Fatalf("after the clone: %+v, want primary h2 (%s), backup h3 (%s)", o, second, first)
			}
			l.waitReplies(t, 20, 20*time.Second)
			c.signal("h2", syscall.SIGKILL)
			l.waitReplies(t, 40, 30*time.Second)
			if o2 := c.owner("counter"); o2.Host != "h3" || o2.Generation <= o.Generation {
				t.Fatalf("owner after the %s primary was killed: %+v, want h3 (%s) after generation %d", second, o2, first, o.Generation)
			}
			seen, lost := l.finish()
			final := get(t, addr, 10*time.Second)
			checkCounter(t, seen, final)
			t.Logf("replies %d, unanswered %d, final %d", len(seen), lost, final)
		})
	}
}
