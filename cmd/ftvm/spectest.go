package main

import (
	"context"
	"flag"
	"fmt"
	"regexp"

	"ftvm/internal/spectest"
	"ftvm/wasm"
)

// runSpectest implements "ftvm spectest [-v] [-run REGEXP] [--engine TIER] DIR...": it runs
// wast2json output (each DIR holds NAME.json and its NAME.N.wasm modules, or
// is a single .json file) and prints a line per file, the failures, the skip
// reasons and the totals. The exit status is 0 iff no command failed.
func runSpectest(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("spectest", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	verbose := fs.Bool("v", false, "print every command (and calls of the spectest print functions)")
	runExpr := fs.String("run", "", "run only the files whose name matches `REGEXP` (e.g. \"^i32$\" or \"^memory\")")
	var engine engineFlag
	engine.register(fs)
	fs.Usage = usageFunc(fs, env.stderr, "spectest [-v] [-run REGEXP] [--engine TIER] DIR...",
		"Runs the WebAssembly spec tests converted by wast2json: each DIR holds\n"+
			"NAME.json and NAME.N.wasm files (directories are searched recursively),\n"+
			"or is a single .json file.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var re *regexp.Regexp
	if *runExpr != "" {
		var err error
		if re, err = regexp.Compile(*runExpr); err != nil {
			fmt.Fprintf(env.stderr, "ftvm spectest: bad -run: %v\n", err)
			return 2
		}
	}
	files, err := spectest.FindFiles(fs.Args())
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm spectest: %v\n", err)
		return 2
	}
	files = spectest.FilterFiles(files, re)
	if len(files) == 0 {
		fmt.Fprintf(env.stderr, "ftvm spectest: no files match -run %q\n", *runExpr)
		return 1
	}
	var writeErr error
	sum := spectest.RunFiles(ctx, files, spectest.Options{Verbose: *verbose, Config: wasm.Config{Engine: engine.e}}, 0, func(r *spectest.Result) {
		if err := r.WriteReport(env.stdout, *verbose); err != nil && writeErr == nil {
			writeErr = err
		}
	})
	if err := sum.Write(env.stdout); err != nil && writeErr == nil {
		writeErr = err
	}
	if writeErr != nil {
		fmt.Fprintf(env.stderr, "ftvm spectest: write report: %v\n", writeErr)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintf(env.stderr, "ftvm spectest: interrupted: %v\n", ctx.Err())
		return 1
	}
	if !sum.OK() {
		return 1
	}
	return 0
}
