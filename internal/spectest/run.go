package spectest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"ftvm/wasm"
)

// DefaultBudget is the instruction budget of one invocation (a start
// function or an action) when Options.Budget is zero: generous for every
// script of the suite, yet bounded so an engine that loops is reported
// rather than hanging the run.
const DefaultBudget = 10_000_000_000

// runSlice is how many instructions one call of Run may execute before the
// runner checks the budget and the context again.
const runSlice = 1 << 24

// Options configures a run.
type Options struct {
	// Config is passed to wasm.Compile; zero fields take the engine's
	// defaults.
	Config wasm.Config
	// Budget is the instruction budget of each invocation; zero means
	// DefaultBudget.
	Budget uint64
	// Verbose records a log line per command and per call of a spectest
	// print function in Result.Log.
	Verbose bool
}

func (o Options) budget() uint64 {
	if o.Budget == 0 {
		return DefaultBudget
	}
	return o.Budget
}

// RunFiles runs script files concurrently (at most parallel at once; zero
// means GOMAXPROCS) and calls report with each result in the order of
// files, as soon as that file and all before it are done. It returns the
// totals.
func RunFiles(ctx context.Context, files []string, opts Options, parallel int, report func(*Result)) Summary {
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	done := make([]chan *Result, len(files))
	for i := range done {
		done[i] = make(chan *Result, 1)
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	go func() {
		for i, f := range files {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				done[i] <- RunFile(ctx, f, opts)
			})
		}
	}()
	var sum Summary
	for _, ch := range done {
		r := <-ch
		sum.Add(r)
		if report != nil {
			report(r)
		}
	}
	wg.Wait()
	return sum
}

// RunFile runs one script file: its commands in order, with its own store,
// modules, registrations and spectest host module. It never panics on bad
// input: a file that cannot be read or decoded is one failed command, and a
// panic of the engine fails the command that caused it.
func RunFile(ctx context.Context, path string, opts Options) *Result {
	res := &Result{Path: path, Name: filepath.Base(path)}
	data, err := os.ReadFile(path)
	if err != nil {
		res.Commands = 1
		res.fail(Failure{Type: "file", Got: fmt.Sprintf("read script: %v", err)})
		return res
	}
	script, err := ParseScript(data)
	if err != nil {
		res.Commands = 1
		res.fail(Failure{Type: "file", Got: err.Error()})
		return res
	}
	res.Commands = len(script.Commands)
	if strings.HasPrefix(filepath.Base(path), "simd") {
		for range script.Commands {
			res.skip(reasonSIMD)
		}
		return res
	}
	r := &runner{
		ctx:   ctx,
		dir:   filepath.Dir(path),
		opts:  opts,
		res:   res,
		store: wasm.NewStore(),
		host:  newHostModule(),
		named: map[string]*module{},
		reg:   map[string]*module{},
	}
	for i := range script.Commands {
		cmd := &script.Commands[i]
		if err := ctx.Err(); err != nil {
			res.fail(Failure{Line: cmd.Line, Type: cmd.Type, Got: fmt.Sprintf("not run: %v", err)})
			continue
		}
		r.command(cmd)
	}
	return res
}

// module is the outcome of a module command: an instance, or why there is
// none.
type module struct {
	inst *wasm.Instance
	line int
	err  error
}

// runner holds the state of one script.
type runner struct {
	ctx   context.Context
	dir   string
	opts  Options
	res   *Result
	store *wasm.Store
	host  *hostModule
	cur   *module            // the current module; nil before the first
	named map[string]*module // modules by $name
	reg   map[string]*module // registrations by import module name
	// calls logs the spectest print calls of the running command, for
	// the verbose log after the command's own line.
	calls []string
}

// outcome is what a command did.
type outcome struct {
	skip     string // skip reason; empty if the command ran
	fail     bool
	what     string
	expected string
	got      string
}

func failed(what, expected, got string) outcome {
	return outcome{fail: true, what: what, expected: expected, got: got}
}

func passed(what, got string) outcome { return outcome{what: what, got: got} }

// command runs one command and records its outcome.
func (r *runner) command(cmd *Command) {
	r.calls = r.calls[:0]
	o := r.safeRun(cmd)
	switch {
	case o.skip != "":
		r.res.skip(o.skip)
		r.logCommand(cmd, describeCommand(cmd), "skipped: "+o.skip)
	case o.fail:
		f := Failure{Line: cmd.Line, Type: cmd.Type, What: o.what, Expected: o.expected, Got: o.got}
		r.res.fail(f)
		if r.opts.Verbose {
			r.res.logf("FAIL %s", f)
		}
	default:
		r.res.pass()
		r.logCommand(cmd, o.what, "ok"+prefixed(": ", o.got))
	}
	for _, c := range r.calls {
		r.res.logf("  %s", c)
	}
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func (r *runner) logCommand(cmd *Command, what, status string) {
	if !r.opts.Verbose {
		return
	}
	r.res.logf("line %d: %s%s: %s", cmd.Line, cmd.Type, prefixed(" ", what), status)
}

// safeRun runs a command, turning a panic (of the engine) into a failure.
func (r *runner) safeRun(cmd *Command) (o outcome) {
	defer func() {
		if p := recover(); p != nil {
			o = failed(describeCommand(cmd), "", fmt.Sprintf("panic: %v\n%s", p, panicSite(debug.Stack())))
		}
	}()
	return r.run(cmd)
}

// panicSite returns the first frames of a stack trace below the panic, to
// locate an engine panic without printing the whole trace.
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	start := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "panic(") {
			start = i + 2
			break
		}
	}
	end := min(start+8, len(lines))
	var b strings.Builder
	for _, l := range lines[start:end] {
		b.WriteString("        " + strings.TrimSpace(l) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// describeCommand names what a command acts on, for failures found before
// the command could be described properly.
func describeCommand(cmd *Command) string {
	if cmd.Action != nil {
		return describeAction(cmd.Action, formatScriptValues(cmd.Action.Args))
	}
	return cmd.Filename
}

func describeAction(a *Action, args string) string {
	var b strings.Builder
	if a.Module != "" {
		b.WriteString(a.Module + ".")
	}
	b.WriteString(a.Field)
	if a.Type == "invoke" {
		b.WriteString(args)
	}
	return b.String()
}

func (r *runner) run(cmd *Command) outcome {
	if err := cmd.Check(); err != nil {
		return failed(describeCommand(cmd), "", fmt.Sprintf("bad command: %v", err))
	}
	if cmd.ModuleType == "text" {
		return outcome{skip: textModuleReason(cmd.Type)}
	}
	if cmd.usesV128() {
		return outcome{skip: reasonSIMD}
	}
	switch cmd.Type {
	case "module":
		return r.moduleCommand(cmd)
	case "register":
		return r.registerCommand(cmd)
	case "action":
		return r.actionCommand(cmd)
	case "assert_return":
		return r.assertReturn(cmd)
	case "assert_trap":
		if cmd.Action == nil {
			return r.assertUninstantiable(cmd)
		}
		return r.assertTrap(cmd)
	case "assert_exhaustion":
		return r.assertExhaustion(cmd)
	case "assert_invalid", "assert_malformed":
		return r.assertCompileError(cmd)
	case "assert_unlinkable":
		return r.assertUnlinkable(cmd)
	case "assert_uninstantiable":
		return r.assertUninstantiable(cmd)
	}
	return failed(describeCommand(cmd), "", fmt.Sprintf("unknown command type %q", cmd.Type))
}

// Stages of loading a module, to tell which one failed.
type loadStage int

const (
	stageRead loadStage = iota
	stageCompile
	stageInstantiate
	stageStart
)

func (s loadStage) String() string {
	switch s {
	case stageRead:
		return "read"
	case stageCompile:
		return "compile"
	case stageInstantiate:
		return "instantiate"
	case stageStart:
		return "run start function of"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// loadError is a failure to load a module, with the stage that failed.
type loadError struct {
	stage loadStage
	file  string
	err   error
}

func (e *loadError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.stage, e.file, e.err)
}

func (e *loadError) Unwrap() error { return e.err }

// compile reads and compiles a module file of the script.
func (r *runner) compile(file string) (*wasm.CompiledModule, error) {
	bin, err := os.ReadFile(filepath.Join(r.dir, file))
	if err != nil {
		return nil, &loadError{stage: stageRead, file: file, err: err}
	}
	cm, err := wasm.Compile(bin, r.opts.Config)
	if err != nil {
		return nil, &loadError{stage: stageCompile, file: file, err: err}
	}
	return cm, nil
}

// load compiles and instantiates a module file and runs its start function.
func (r *runner) load(file string) (*wasm.Instance, error) {
	cm, err := r.compile(file)
	if err != nil {
		return nil, err
	}
	inst, err := r.store.Instantiate(cm, r.resolve)
	if err != nil {
		return nil, &loadError{stage: stageInstantiate, file: file, err: err}
	}
	if start := inst.StartFunc(); start != nil {
		if _, err := r.call(inst, start, nil); err != nil {
			return nil, &loadError{stage: stageStart, file: file, err: err}
		}
	}
	return inst, nil
}

// resolve supplies imports from registered modules and the spectest module.
func (r *runner) resolve(imp wasm.Import) (wasm.Extern, error) {
	if m, ok := r.reg[imp.Module]; ok {
		if m.inst == nil {
			return nil, fmt.Errorf("unknown import: module registered as %q (line %d) failed to load", imp.Module, m.line)
		}
		if ext := m.inst.Export(imp.Name); ext != nil {
			return ext, nil
		}
		return nil, fmt.Errorf("unknown import: %q has no export %q", imp.Module, imp.Name)
	}
	if imp.Module == hostModuleName {
		if ext := r.host.lookup(imp.Name); ext != nil {
			return ext, nil
		}
		return nil, fmt.Errorf("unknown import: %q has no export %q", imp.Module, imp.Name)
	}
	return nil, fmt.Errorf("unknown import: no module registered as %q", imp.Module)
}

// budgetError reports an invocation that used up its instruction budget.
type budgetError struct{ budget uint64 }

func (e *budgetError) Error() string {
	return fmt.Sprintf("instruction budget of %d exhausted", e.budget)
}

// call invokes f in inst and runs it to completion, servicing calls of the
// spectest print functions.
func (r *runner) call(inst *wasm.Instance, f *wasm.Function, args []uint64) ([]uint64, error) {
	if err := inst.Invoke(f, args); err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	budget := r.opts.budget()
	remaining := budget
	for {
		if err := r.ctx.Err(); err != nil {
			return nil, fmt.Errorf("run: %w", err)
		}
		slice := min(remaining, runSlice)
		stop, err := inst.Run(slice)
		if err != nil {
			return nil, err
		}
		switch stop.Reason {
		case wasm.StopDone:
			return slices.Clone(stop.Results), nil
		case wasm.StopHostCall:
			if stop.Func == nil || !r.host.owns(stop.Func) {
				return nil, fmt.Errorf("call of an unknown host function %v", stop.Func)
			}
			if r.opts.Verbose {
				r.calls = append(r.calls, describeCall(stop.Func, stop.Args))
			}
			// The print functions have no results.
			if err := inst.Resume(nil); err != nil {
				return nil, fmt.Errorf("resume after %s.%s: %w", stop.Func.Module, stop.Func.Name, err)
			}
		case wasm.StopBudget:
			remaining -= slice
			if remaining == 0 {
				return nil, &budgetError{budget: budget}
			}
		default:
			return nil, fmt.Errorf("run: unknown stop reason %d", stop.Reason)
		}
	}
}

func (r *runner) moduleCommand(cmd *Command) outcome {
	inst, err := r.load(cmd.Filename)
	m := &module{inst: inst, line: cmd.Line, err: err}
	r.cur = m
	if cmd.Name != "" {
		r.named[cmd.Name] = m
	}
	what := cmd.Filename + prefixed(" ", cmd.Name)
	if err != nil {
		return failed(what, "module to load", err.Error())
	}
	return passed(what, "")
}

func (r *runner) registerCommand(cmd *Command) outcome {
	m, err := r.module(cmd.Name)
	what := fmt.Sprintf("%q", cmd.As)
	if cmd.Name != "" {
		what = cmd.Name + " as " + what
	}
	if m != nil {
		// Register even a module that failed to load, so imports from it
		// explain why they fail.
		r.reg[cmd.As] = m
	}
	if err != nil {
		return failed(what, "", err.Error())
	}
	return passed(what, "")
}

// module returns the named module, or the current one for an empty name.
// It returns an error if there is no such module or it failed to load.
func (r *runner) module(name string) (*module, error) {
	m := r.cur
	if name != "" {
		m = r.named[name]
		if m == nil {
			return nil, fmt.Errorf("no module named %s", name)
		}
	} else if m == nil {
		return nil, errors.New("no current module")
	}
	if m.inst == nil {
		label := "the current module"
		if name != "" {
			label = "module " + name
		}
		return m, fmt.Errorf("%s (line %d) failed to load: %v", label, m.line, m.err)
	}
	return m, nil
}

// actionResult is what an action did.
type actionResult struct {
	what    string   // the action with its arguments
	types   []string // result types
	results []uint64
	// err is an error of the harness (no such module or export, bad
	// arguments): the action could not be tried.
	err error
	// runErr is the error of the invocation itself, a *wasm.Trap for a
	// trap.
	runErr error
}

// act performs a command's action.
func (r *runner) act(a *Action) actionResult {
	res := r.doAct(a)
	if res.err != nil {
		res.err = fmt.Errorf("action not run: %w", res.err)
	}
	return res
}

func (r *runner) doAct(a *Action) actionResult {
	res := actionResult{what: describeAction(a, formatScriptValues(a.Args))}
	m, err := r.module(a.Module)
	if err != nil {
		res.err = err
		return res
	}
	switch a.Type {
	case "get":
		g, ok := m.inst.Export(a.Field).(*wasm.Global)
		if !ok {
			res.err = fmt.Errorf("no exported global %q", a.Field)
			return res
		}
		res.types = []string{g.Type().Type.String()}
		res.results = []uint64{g.Get()}
		return res
	case "invoke":
		f := m.inst.ExportedFunc(a.Field)
		if f == nil {
			res.err = fmt.Errorf("no exported function %q", a.Field)
			return res
		}
		typ := f.Type()
		if len(a.Args) != len(typ.Params) {
			res.err = fmt.Errorf("%d arguments for a function of type %v", len(a.Args), typ)
			return res
		}
		args := make([]uint64, len(a.Args))
		params := make([]string, len(a.Args))
		for i, v := range a.Args {
			params[i] = typ.Params[i].String()
			if v.Type != params[i] {
				res.err = fmt.Errorf("argument %d is %s, the function's type is %v", i, v.Type, typ)
				return res
			}
			if args[i], err = ParseArg(v); err != nil {
				res.err = fmt.Errorf("argument %d: %w", i, err)
				return res
			}
		}
		res.what = describeAction(a, formatValues(params, args))
		res.types = make([]string, len(typ.Results))
		for i, t := range typ.Results {
			res.types[i] = t.String()
		}
		res.results, res.runErr = r.call(m.inst, f, args)
		return res
	}
	res.err = fmt.Errorf("unknown action type %q", a.Type)
	return res
}

func (r *runner) actionCommand(cmd *Command) outcome {
	ar := r.act(cmd.Action)
	switch {
	case ar.err != nil:
		return failed(ar.what, "", ar.err.Error())
	case ar.runErr != nil:
		return failed(ar.what, "success", describeError(ar.runErr))
	}
	return passed(ar.what, formatResults(ar.types, ar.results))
}

// formatResults describes results for the verbose log: nothing if there
// are none.
func formatResults(types []string, vals []uint64) string {
	if len(vals) == 0 {
		return ""
	}
	return formatValues(types, vals)
}

func (r *runner) assertReturn(cmd *Command) outcome {
	exps := make([]Expectation, len(cmd.Expected))
	for i, v := range cmd.Expected {
		e, err := ParseExpected(v)
		if err != nil {
			return failed(describeCommand(cmd), "", fmt.Sprintf("bad expected value %d: %v", i, err))
		}
		exps[i] = e
	}
	want := formatExpectations(exps)
	ar := r.act(cmd.Action)
	switch {
	case ar.err != nil:
		return failed(ar.what, want, ar.err.Error())
	case ar.runErr != nil:
		return failed(ar.what, want, describeError(ar.runErr))
	}
	got := formatValues(ar.types, ar.results)
	if len(ar.results) != len(exps) {
		return failed(ar.what, want, fmt.Sprintf("%d results %s", len(ar.results), got))
	}
	for i, e := range exps {
		if i < len(ar.types) && ar.types[i] != e.Type {
			return failed(ar.what, want, fmt.Sprintf("results of types %v", ar.types))
		}
		if !e.Match(ar.results[i]) {
			return failed(ar.what, want, got)
		}
	}
	return passed(ar.what, formatResults(ar.types, ar.results))
}

func formatExpectations(exps []Expectation) string {
	parts := make([]string, len(exps))
	for i, e := range exps {
		parts[i] = e.String()
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// describeError describes an error of an invocation, naming traps as such.
func describeError(err error) string {
	var trap *wasm.Trap
	if errors.As(err, &trap) {
		return fmt.Sprintf("trap %q (%v)", trap.Code.String(), err)
	}
	return "error: " + err.Error()
}

func (r *runner) assertTrap(cmd *Command) outcome {
	want := fmt.Sprintf("trap %q", cmd.Text)
	ar := r.act(cmd.Action)
	switch {
	case ar.err != nil:
		return failed(ar.what, want, ar.err.Error())
	case ar.runErr == nil:
		return failed(ar.what, want, "results "+formatValues(ar.types, ar.results))
	}
	var trap *wasm.Trap
	if !errors.As(ar.runErr, &trap) {
		return failed(ar.what, want, describeError(ar.runErr))
	}
	return passed(ar.what, describeError(ar.runErr))
}

func (r *runner) assertExhaustion(cmd *Command) outcome {
	want := fmt.Sprintf("trap %q (%v or %v)", cmd.Text, wasm.TrapCallStackExhausted, wasm.TrapValueStackExhausted)
	ar := r.act(cmd.Action)
	switch {
	case ar.err != nil:
		return failed(ar.what, want, ar.err.Error())
	case ar.runErr == nil:
		return failed(ar.what, want, "results "+formatValues(ar.types, ar.results))
	}
	var trap *wasm.Trap
	if !errors.As(ar.runErr, &trap) ||
		(trap.Code != wasm.TrapCallStackExhausted && trap.Code != wasm.TrapValueStackExhausted) {
		return failed(ar.what, want, describeError(ar.runErr))
	}
	return passed(ar.what, describeError(ar.runErr))
}

func (r *runner) assertCompileError(cmd *Command) outcome {
	want := fmt.Sprintf("compile error %q", cmd.Text)
	_, err := r.compile(cmd.Filename)
	var le *loadError
	switch {
	case err == nil:
		return failed(cmd.Filename, want, "module compiled")
	case !errors.As(err, &le) || le.stage != stageCompile:
		return failed(cmd.Filename, want, err.Error())
	}
	return passed(cmd.Filename, le.err.Error())
}

func (r *runner) assertUnlinkable(cmd *Command) outcome {
	want := fmt.Sprintf("link error %q", cmd.Text)
	_, err := r.load(cmd.Filename)
	var le *loadError
	var link *wasm.LinkError
	switch {
	case err == nil:
		return failed(cmd.Filename, want, "module instantiated")
	case !errors.As(err, &le) || le.stage != stageInstantiate || !errors.As(err, &link):
		return failed(cmd.Filename, want, err.Error())
	}
	return passed(cmd.Filename, le.err.Error())
}

func (r *runner) assertUninstantiable(cmd *Command) outcome {
	want := fmt.Sprintf("trap %q during instantiation", cmd.Text)
	_, err := r.load(cmd.Filename)
	var le *loadError
	var trap *wasm.Trap
	switch {
	case err == nil:
		return failed(cmd.Filename, want, "module instantiated")
	case !errors.As(err, &le) || le.stage < stageInstantiate || !errors.As(err, &trap):
		return failed(cmd.Filename, want, err.Error())
	}
	return passed(cmd.Filename, le.err.Error())
}
