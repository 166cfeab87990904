package wasi

// Kind classifies a WASI function, or a Host method, by how it relates to
// the world outside the VM.
type Kind uint8

const (
	// Unknown is the kind of a name that is not a preview1 function or a
	// Host method.
	Unknown Kind = iota
	// Deterministic calls are computed from the VM's and System's state
	// alone; they never reach the Host, so replay needs nothing logged.
	Deterministic
	// Input calls take a result from outside (clocks, randomness,
	// readiness, data read). Their Host results are logged on the primary
	// and replayed on the backup.
	Input
	// Output calls send something out; the guest's result does not depend
	// on it. They are subject to the Output Rule and dropped on replay.
	Output
	// Effect calls change the outside world and return a result the guest
	// sees (file-system operations, writes to files): both an output and
	// an input. The primary performs them and logs their result; the
	// backup takes the result from the log.
	Effect
)

func (k Kind) String() string {
	switch k {
	case Deterministic:
		return "deterministic"
	case Input:
		return "input"
	case Output:
		return "output"
	case Effect:
		return "effect"
	}
	return "unknown"
}

// Classify returns the kind of the preview1 function name: the widest kind
// any call of it can have. fd_write, for example, is an Output when it
// writes to stdout or a connection and an Effect when it writes to a file,
// so it is classified Effect. Unknown names give Unknown.
func Classify(name string) Kind {
	if f, ok := functions[name]; ok {
		return f.kind
	}
	return Unknown
}

// hostKinds classifies the methods of Host.
var hostKinds = map[string]Kind{
	"ClockResolution": Input,
	"ClockTime":       Input,
	"Random":          Input,
	"Poll":            Input,
	"Read":            Input,
	"Accept":          Input,
	"Pread":           Input,
	"Filestat":        Input,
	"ReadDir":         Input,
	"PathFilestat":    Input,
	"Readlink":        Input,

	"Open":         Effect,
	"Pwrite":       Effect,
	"SetSize":      Effect,
	"SetTimes":     Effect,
	"Sync":         Effect,
	"Allocate":     Effect,
	"Mkdir":        Effect,
	"Rmdir":        Effect,
	"Unlink":       Effect,
	"Rename":       Effect,
	"Link":         Effect,
	"Symlink":      Effect,
	"PathSetTimes": Effect,

	"Write":    Output,
	"Shutdown": Output,
	"Close":    Output,
}

// ClassifyHost returns the kind of the Host method named method (Input,
// Effect or Output), or Unknown.
func ClassifyHost(method string) Kind { return hostKinds[method] }
