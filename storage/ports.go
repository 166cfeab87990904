package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// ListenerPorts returns the TCP ports of spec's listeners that are numbers
// (ftvm start refuses others), each once.
func ListenerPorts(spec VMSpec) []int {
	var ports []int
	for _, a := range spec.Listeners {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			continue
		}
		if !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	return ports
}

// The directory store's index of listener ports: ports/PORT/VM, an empty
// file for each VM whose spec has (or once had) a listener on PORT, so that
// a start checks the few VMs that may clash with it rather than reading
// every spec. ports/indexed says the index covers every spec; a store
// written before the index existed gets it built at its first use.
const portsIndexed = "indexed"

func (d *Dir) portsDir() string { return filepath.Join(d.root, "ports") }

// indexPorts adds spec's ports to the index; each new entry is durable
// before it returns (before the spec that needs it is written).
func (d *Dir) indexPorts(spec VMSpec) error {
	for _, p := range ListenerPorts(spec) {
		dir := filepath.Join(d.portsDir(), strconv.Itoa(p))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(dir, spec.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		f.Close()
		if err := syncPath(dir); err != nil {
			return err
		}
	}
	return nil
}

// VMsOnPort returns the names of the VMs whose spec has, or once had, a
// listener on port: a superset, which the caller narrows by reading their
// specs.
func (d *Dir) VMsOnPort(port int) ([]string, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(d.portsDir(), portsIndexed)); errors.Is(err, fs.ErrNotExist) {
		if err := d.buildPortIndex(); err != nil {
			return nil, d.wrap("index listener ports", err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(d.portsDir(), strconv.Itoa(port)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, d.wrap("list port users", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// buildPortIndex indexes every spec in the store (one written by a version
// without the index), then marks the index complete. Builders racing each
// other, or a start, write the same entries.
func (d *Dir) buildPortIndex() error {
	names, err := d.VMs()
	if err != nil {
		return err
	}
	for _, name := range names {
		spec, err := d.VM(name)
		if errors.Is(err, ErrUnreachable) {
			return fmt.Errorf("vm %s: %w", name, err)
		}
		if err != nil {
			// Being created (its start indexes it), or a spec that does
			// not decode (Unreadable lists it; nothing runs it).
			continue
		}
		if err := d.indexPorts(spec); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(d.portsDir(), 0o755); err != nil {
		return err
	}
	return writeSync(filepath.Join(d.portsDir(), portsIndexed), nil, 0o644)
}

// syncPath makes a directory's entries durable.
func syncPath(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
