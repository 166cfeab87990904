package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"ftvm/storage"
)

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// TestPageAndStream: the page and its assets are served from the binary,
// refer to nothing elsewhere, and the stream sends the charts' history
// and then the state, which the JSON form also gives.
func TestPageAndStream(t *testing.T) {
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	if err := dir.AppendEvent(storage.Event{Time: at, Host: "h1", VM: "vm1", Generation: 2, Kind: "went live"}); err != nil {
		t.Fatal(err)
	}
	s := New(dir, "h1", nil)
	srv := httptest.NewServer(s)
	defer srv.Close()

	page := get(t, srv.URL+"/")
	external := regexp.MustCompile(`(src|href)="(https?:)?//`)
	for _, p := range []string{"/", "/static/app.js", "/static/style.css"} {
		body := get(t, srv.URL+p)
		if external.MatchString(body) {
			t.Errorf("%s refers to another site", p)
		}
	}
	if !strings.Contains(page, `src="static/app.js"`) {
		t.Errorf("page does not load its script:\n%s", page)
	}

	var st State
	if err := json.Unmarshal([]byte(get(t, srv.URL+"/api/state")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Self != "h1" || len(st.Events) != 1 || st.Events[0].Kind != "went live" || st.VMs == nil || st.Hosts == nil {
		t.Fatalf("state: %+v", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	// The history, the state, and (refresh) the next state.
	go s.refresh(time.Now())
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var events []string
	for len(events) < 3 && sc.Scan() {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
	}
	if strings.Join(events, ",") != "history,state,state" {
		t.Fatalf("stream: %v, %v", events, sc.Err())
	}
}

// TestNextRefreshBoundsItsCost: a reading of the cluster that takes long
// is made less often, so that the dashboard costs a host at most a
// twentieth of a CPU; a quick one every interval.
func TestNextRefreshBoundsItsCost(t *testing.T) {
	for _, c := range []struct{ took, want time.Duration }{
		{time.Millisecond, time.Second},
		{50 * time.Millisecond, time.Second},
		{150 * time.Millisecond, 3 * time.Second},
	} {
		if got := nextRefresh(time.Second, c.took); got != c.want {
			t.Errorf("a reading that took %v: next in %v, want %v", c.took, got, c.want)
		}
	}
}
