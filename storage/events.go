package storage

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Event is one entry of the cluster's event history: what happened to a
// VM (or a host, with no VM) on a host, in a generation.
type Event struct {
	Time       time.Time `json:"time"`
	Host       string    `json:"host"`
	VM         string    `json:"vm,omitempty"`
	Generation uint64    `json:"generation,omitempty"`
	Kind       string    `json:"kind"`
	Detail     string    `json:"detail,omitempty"`
}

// EventsMax bounds each host's event file: past it, the file becomes the
// host's old one (replacing the one before), so that a host keeps at most
// twice this much history.
const EventsMax = 1 << 20

func (d *Dir) eventsDir() string { return filepath.Join(d.root, "events") }

// AppendEvent appends e to its host's event file. Each host appends only
// to its own, so appends need no lock across hosts.
func (d *Dir) AppendEvent(e Event) error { return d.AppendEvents([]Event{e}) }

// AppendEvents appends es, in order, to their hosts' event files: one
// write per host's file, for the hundreds of events of a mass failover.
func (d *Dir) AppendEvents(es []Event) error {
	for _, e := range es {
		if err := validName("host", e.Host); err != nil {
			return err
		}
	}
	if err := d.check(); err != nil {
		return err
	}
	byHost := map[string][]byte{}
	var hosts []string
	for _, e := range es {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, ok := byHost[e.Host]; !ok {
			hosts = append(hosts, e.Host)
		}
		byHost[e.Host] = append(append(byHost[e.Host], b...), '\n')
	}
	if len(hosts) == 0 {
		return nil
	}
	dir := d.eventsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return d.wrap("events", err)
	}
	var errs []error
	for _, host := range hosts {
		errs = append(errs, d.appendLines(filepath.Join(dir, host+".jsonl"), byHost[host]))
	}
	return errors.Join(errs...)
}

// appendLines appends b to the event file path, which becomes the old one
// first if b would take it to EventsMax.
func (d *Dir) appendLines(path string, b []byte) error {
	if fi, err := os.Stat(path); err == nil && fi.Size()+int64(len(b)) >= EventsMax {
		if err := os.Rename(path, path+".1"); err != nil {
			return d.wrap("events", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return d.wrap("events", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return d.wrap("events", err)
}

// Events returns every host's events, oldest first. Lines that do not
// decode (a torn last line of a host that died writing it) are skipped.
func (d *Dir) Events() ([]Event, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(d.eventsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, d.wrap("events", err)
	}
	var out []Event
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".jsonl") && !strings.HasSuffix(e.Name(), ".jsonl.1") {
			continue
		}
		f, err := os.Open(filepath.Join(d.eventsDir(), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated meanwhile
		}
		if err != nil {
			return nil, d.wrap("events", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, EventsMax)
		for sc.Scan() {
			var ev Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				out = append(out, ev)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("storage: events %s: %w", e.Name(), err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// EventsStamp returns a string that changes whenever the event history
// does (its files' names, sizes and modification times), so that a reader
// that polls it rereads the history only when it changed.
func (d *Dir) EventsStamp() (string, error) {
	if err := d.check(); err != nil {
		return "", err
	}
	ents, err := os.ReadDir(d.eventsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", d.wrap("events", err)
	}
	var b strings.Builder
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // rotated meanwhile
		}
		fmt.Fprintf(&b, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
