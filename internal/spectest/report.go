package spectest

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Skip reasons.
const (
	reasonSIMD = "SIMD (v128) not supported"
)

// textModuleReason is the skip reason of a command on a text-format module.
func textModuleReason(cmdType string) string {
	return fmt.Sprintf("text-format module (%s with module_type text)", cmdType)
}

// Failure is one failed command.
type Failure struct {
	Line int    // line of the command in the .wast script; 0 for the file itself
	Type string // command type, or "file" when the file could not be run
	// What names what the command did: an invocation with its arguments
	// or a module file.
	What     string
	Expected string
	Got      string
}

func (f Failure) String() string {
	var b strings.Builder
	if f.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", f.Line)
	}
	b.WriteString(f.Type)
	if f.What != "" {
		b.WriteString(" " + f.What)
	}
	if f.Expected != "" {
		b.WriteString(": expected " + f.Expected)
		if f.Got != "" {
			b.WriteString(", got " + f.Got)
		}
	} else if f.Got != "" {
		b.WriteString(": " + f.Got)
	}
	return b.String()
}

// Result is the outcome of one script file.
type Result struct {
	Path string // the .json file
	Name string // its base name, e.g. "i32.json"
	// Commands counts the file's commands; Passed, Failed and Skipped
	// split them. A file that cannot be read or decoded counts as one
	// failed command.
	Commands                int
	Passed, Failed, Skipped int
	Failures                []Failure
	// Skips counts skipped commands by reason.
	Skips map[string]int
	// Log has one line per command (and per call of a spectest print
	// function) when Options.Verbose is set.
	Log []string
}

// OK reports whether no command failed.
func (r *Result) OK() bool { return r.Failed == 0 }

// SkippedWhole reports whether every command of the file was skipped.
func (r *Result) SkippedWhole() bool {
	return r.Skipped > 0 && r.Passed == 0 && r.Failed == 0
}

func (r *Result) pass() { r.Passed++ }

func (r *Result) fail(f Failure) {
	r.Failed++
	r.Failures = append(r.Failures, f)
}

func (r *Result) skip(reason string) {
	r.Skipped++
	if r.Skips == nil {
		r.Skips = map[string]int{}
	}
	r.Skips[reason]++
}

func (r *Result) logf(format string, args ...any) {
	r.Log = append(r.Log, fmt.Sprintf(format, args...))
}

// WriteReport writes the file's line, then an indented line per failure, or
// with verbose the log of every command (which includes the failures).
func (r *Result) WriteReport(w io.Writer, verbose bool) error {
	var b strings.Builder
	switch {
	case r.SkippedWhole():
		fmt.Fprintf(&b, "SKIP  %s  (%d commands: %s)\n", r.Name, r.Skipped, strings.Join(sortedReasons(r.Skips), "; "))
	case r.OK():
		fmt.Fprintf(&b, "PASS  %s  (%d commands", r.Name, r.Commands)
		if r.Skipped > 0 {
			fmt.Fprintf(&b, ", %d skipped", r.Skipped)
		}
		b.WriteString(")\n")
	default:
		fmt.Fprintf(&b, "FAIL  %s  (%d failed of %d commands", r.Name, r.Failed, r.Commands)
		if r.Skipped > 0 {
			fmt.Fprintf(&b, ", %d skipped", r.Skipped)
		}
		b.WriteString(")\n")
	}
	if verbose && len(r.Log) > 0 {
		// The log already describes each failure where it happened.
		for _, l := range r.Log {
			b.WriteString("    " + l + "\n")
		}
	} else {
		for _, f := range r.Failures {
			b.WriteString("    " + f.String() + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sortedReasons returns the reasons of a skip map, most frequent first.
func sortedReasons(skips map[string]int) []string {
	reasons := slices.Collect(maps.Keys(skips))
	slices.SortFunc(reasons, func(a, b string) int {
		if c := cmp.Compare(skips[b], skips[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return reasons
}

// Summary totals the results of several files.
type Summary struct {
	Files, FailedFiles      int
	Passed, Failed, Skipped int
	Skips                   map[string]int
}

// Add counts one file's result.
func (s *Summary) Add(r *Result) {
	s.Files++
	if !r.OK() {
		s.FailedFiles++
	}
	s.Passed += r.Passed
	s.Failed += r.Failed
	s.Skipped += r.Skipped
	for reason, n := range r.Skips {
		if s.Skips == nil {
			s.Skips = map[string]int{}
		}
		s.Skips[reason] += n
	}
}

// OK reports whether no command failed.
func (s *Summary) OK() bool { return s.Failed == 0 }

// Write writes the skip reasons, grouped, then the final line
// "N passed, M failed" with ", K skipped" when commands were skipped.
func (s *Summary) Write(w io.Writer) error {
	var b strings.Builder
	for _, reason := range sortedReasons(s.Skips) {
		fmt.Fprintf(&b, "skipped %d: %s\n", s.Skips[reason], reason)
	}
	fmt.Fprintf(&b, "%d passed, %d failed", s.Passed, s.Failed)
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", s.Skipped)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}
