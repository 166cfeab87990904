package ft

// MayRelease is the Output Rule's release decision, one pure function of
// the primary's state: an output produced when the log's last entry was
// tag may leave now if and only if the primary runs alone (open: its gate
// was released when it won the test-and-set) or the backup has
// acknowledged every entry through tag (tag <= acked; a clone that gives a
// primary running alone a new backup sets acked to the clone point). The
// same decision holds an effect at the gate's barrier: it may run when an
// output tagged like it may leave. Outputs leave in the order they were
// produced, so a caller releases the head of its queue while this holds
// and stops at the first output for which it does not. A gate that was
// discarded (its node halted) releases nothing.
//
// vmm.Gate also holds everything while its host's lease has run out
// (vmm.Lease): a host taken for lost must be silent.
//
// vmm.Gate and the simulators call it, so that what the simulators check
// is what the hosts do.
func MayRelease(open bool, acked, tag uint64) bool {
	return open || tag <= acked
}
