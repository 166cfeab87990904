package vmm

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/google/pprof/profile"
)

// DefaultProfilePeriod is the sampling period of a guest profile, in
// instructions: a prime, so that it does not beat with the guest's loops.
const DefaultProfilePeriod = 9973

// profiler samples the guest's call stack every period instructions of
// its own count, so a profile depends on the guest's execution alone: a
// replay of a log gives the profile of the recorded run, and the machine's
// load does not skew it. It counts instructions, not time: a host call
// weighs nothing, however long it waits.
type profiler struct {
	period uint64
	next   uint64           // the instruction count of the next sample
	stacks map[string]int64 // by the stack's indices, 4 bytes each
	buf    []uint32
	key    []byte
}

func newProfiler(period, count uint64) *profiler {
	return &profiler{period: period, next: count + period, stacks: make(map[string]int64)}
}

// budget bounds a run so that it stops at the next sample.
func (p *profiler) budget(count, budget uint64) uint64 {
	return min(budget, p.next-count)
}

// sample takes the samples due at count from the stack of stack.
func (p *profiler) sample(count uint64, stack func([]uint32) []uint32) {
	for count >= p.next {
		p.buf = stack(p.buf[:0])
		if len(p.buf) > 0 {
			p.key = p.key[:0]
			for _, idx := range p.buf {
				p.key = binary.LittleEndian.AppendUint32(p.key, idx)
			}
			p.stacks[string(p.key)]++
		}
		p.next += p.period
	}
}

// write encodes the samples as a gzipped pprof profile, naming functions
// with name.
func (p *profiler) write(w io.Writer, name func(uint32) string) error {
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "instructions", Unit: "count"}},
		PeriodType: &profile.ValueType{Type: "instructions", Unit: "count"},
		Period:     int64(p.period),
		Mapping:    []*profile.Mapping{{ID: 1, File: "guest.wasm", HasFunctions: true}},
	}
	locs := make(map[uint32]*profile.Location)
	loc := func(idx uint32) *profile.Location {
		if l, ok := locs[idx]; ok {
			return l
		}
		fn := &profile.Function{ID: uint64(len(prof.Function) + 1), Name: name(idx), SystemName: fmt.Sprintf("func[%d]", idx)}
		prof.Function = append(prof.Function, fn)
		l := &profile.Location{ID: uint64(len(prof.Location) + 1), Mapping: prof.Mapping[0], Line: []profile.Line{{Function: fn}}}
		prof.Location = append(prof.Location, l)
		locs[idx] = l
		return l
	}
	keys := make([]string, 0, len(p.stacks))
	for k := range p.stacks {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a stable file for a given run
	for _, k := range keys {
		n := p.stacks[k]
		var s profile.Sample
		for i := 0; i+4 <= len(k); i += 4 {
			s.Location = append(s.Location, loc(binary.LittleEndian.Uint32([]byte(k[i:i+4]))))
		}
		s.Value = []int64{n, n * int64(p.period)}
		prof.Sample = append(prof.Sample, &s)
	}
	if err := prof.CheckValid(); err != nil {
		return fmt.Errorf("guest profile: %w", err)
	}
	return prof.Write(w)
}
