package host

import (
	"bytes"
	"io"
	"sync"
)

// labeledOutput is one output stream (the host's stdout, or its stderr)
// shared by the guests of a host, each line marked with its VM's name, so
// that a host running hundreds of VMs says whose line each is. Nothing is
// held back to wait for the rest of a line: a guest's output counts as
// written once its Write returns (failover relies on it, see
// vmm.VM.Unwritten), so a line left unfinished by one VM is ended when
// another's comes, and the rest of it goes on a line of its own, marked
// again.
type labeledOutput struct {
	mu   sync.Mutex
	w    io.Writer
	open string // the VM whose line is unfinished; "" at a line's start
	buf  []byte
}

// vmOutput is one VM's writer on a labeledOutput.
type vmOutput struct {
	o     *labeledOutput
	label []byte // "VM| "
}

func (o *labeledOutput) forVM(vm string) io.Writer {
	return &vmOutput{o: o, label: []byte(vm + "| ")}
}

func (v *vmOutput) Write(p []byte) (int, error) {
	o := v.o
	o.mu.Lock()
	defer o.mu.Unlock()
	vm := string(v.label)
	b := o.buf[:0]
	if o.open != "" && o.open != vm {
		b = append(b, '\n')
		o.open = ""
	}
	for rest := p; len(rest) > 0; {
		if o.open == "" {
			b = append(b, v.label...)
			o.open = vm
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			b = append(b, rest...)
			break
		}
		b = append(b, rest[:i+1]...)
		rest = rest[i+1:]
		o.open = ""
	}
	o.buf = b[:0]
	if cap(o.buf) > 64<<10 {
		o.buf = nil // one long write does not stay held
	}
	if _, err := o.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}
