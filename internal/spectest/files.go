package spectest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// FindFiles expands its arguments into script files: a file is taken as is,
// a directory contributes every .json file in it and below it, in lexical
// order. A directory without any .json file is an error, so a mistyped path
// is not a silent pass.
func FindFiles(args []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			files = append(files, p)
		}
	}
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err != nil {
			return nil, fmt.Errorf("find spec scripts: %w", err)
		}
		if !st.IsDir() {
			add(arg)
			continue
		}
		var found []string
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), ".json") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find spec scripts in %s: %w", arg, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("find spec scripts: no .json files in %s", arg)
		}
		slices.Sort(found)
		for _, p := range found {
			add(p)
		}
	}
	return files, nil
}

// ScriptName returns the name of a script file without directory and
// ".json" extension, e.g. "i32" for "json/i32/i32.json".
func ScriptName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}

// FilterFiles keeps the files whose name (ScriptName) or base name (with
// the extension) matches re; a nil re keeps all.
func FilterFiles(files []string, re *regexp.Regexp) []string {
	if re == nil {
		return files
	}
	var out []string
	for _, f := range files {
		if re.MatchString(ScriptName(f)) || re.MatchString(filepath.Base(f)) {
			out = append(out, f)
		}
	}
	return out
}
