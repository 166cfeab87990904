package wasi

// proc_exit and proc_raise: the end of the guest, computed from the call
// alone.

func (s *System) procExit(c *call) (Errno, error) {
	s.exited, s.exitCode = true, c.u32(0)
	return ESUCCESS, &ExitError{Code: s.exitCode}
}

// Signal numbers of preview1 whose default action is not to terminate.
const (
	sigNone  = 0
	sigChld  = 16
	sigCont  = 17
	sigStop  = 18
	sigTstp  = 19
	sigTtin  = 20
	sigTtou  = 21
	sigUrg   = 22
	sigWinch = 27
	sigMax   = 30
)

// procRaise delivers a signal to the guest itself with its default action,
// as a process without handlers would: signals that are ignored by default
// (and the stop signals, as nothing can stop a guest) do nothing, the others
// terminate it with status 128+signal, as a shell reports it.
func (s *System) procRaise(c *call) (Errno, error) {
	sig := c.u32(0)
	switch {
	case sig > sigMax:
		return EINVAL, nil
	case sig == sigNone, sig == sigChld, sig == sigCont, sig == sigUrg, sig == sigWinch,
		sig >= sigStop && sig <= sigTtou:
		return ESUCCESS, nil
	}
	s.exited, s.exitCode = true, 128+sig
	return ESUCCESS, &ExitError{Code: s.exitCode}
}
