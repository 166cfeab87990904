package host

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"time"

	"ftvm/storage"
)

// Location is where a VM is served now: its primary host, and the
// addresses its guest's listeners are reached at there.
type Location struct {
	VM         string `json:"vm"`
	Generation uint64 `json:"generation"`
	Primary    string `json:"primary"`
	// Listeners are the guest's listeners as clients reach them: a
	// listener on an unspecified address (0.0.0.0, ::) is given the
	// primary host's address.
	Listeners []string `json:"listeners"`
	// Sessions is where the primary serves sessions (ftvm proxy, package
	// client).
	Sessions string `json:"sessions,omitempty"`
	// Alive: the primary's host is alive in the registry.
	Alive bool `json:"alive"`
}

// Where returns where VM vm is served now: the owner of its latest
// generation, as the store says.
func Where(dir storage.Store, vm string, now time.Time) (Location, error) {
	spec, err := dir.VM(vm)
	if errors.Is(err, fs.ErrNotExist) {
		return Location{}, fmt.Errorf("no vm %q", vm)
	}
	if err != nil {
		return Location{}, err
	}
	if spec.Stopped {
		return Location{}, fmt.Errorf("vm %s is stopped", vm)
	}
	o, ok, err := dir.Latest(vm)
	if err != nil {
		return Location{}, err
	}
	if !ok {
		return Location{}, fmt.Errorf("vm %s has no primary yet", vm)
	}
	if sts, err := dir.Statuses(vm); err == nil {
		for _, st := range sts {
			if st.Host == o.Host && st.Generation == o.Generation && VMEnded(st.State) {
				return Location{}, fmt.Errorf("vm %s is served nowhere: it %s (ftvm status says more)", vm, st.State)
			}
		}
	}
	loc := Location{VM: vm, Generation: o.Generation, Primary: o.Host}
	hosts, err := Hosts(dir, now)
	if err != nil {
		return Location{}, err
	}
	addr := ""
	for _, h := range hosts {
		if h.Name == o.Host {
			loc.Alive, loc.Sessions, addr = h.Alive, h.Sessions, h.Addr
		}
	}
	loc.Listeners = servedAt(spec.Listeners, addr)
	return loc, nil
}

// servedAt returns the addresses clients reach listeners at on the host
// whose address is hostAddr: a listener on an unspecified address (0.0.0.0,
// ::, none) gets the host's IP.
func servedAt(listeners []string, hostAddr string) []string {
	hostIP, _, _ := net.SplitHostPort(hostAddr)
	out := make([]string, 0, len(listeners))
	for _, a := range listeners {
		ip, port, err := net.SplitHostPort(a)
		if err == nil && hostIP != "" && (ip == "" || net.ParseIP(ip) != nil && net.ParseIP(ip).IsUnspecified()) {
			a = net.JoinHostPort(hostIP, port)
		}
		out = append(out, a)
	}
	return out
}
