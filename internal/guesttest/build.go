// Package guesttest builds the Go guest programs under testdata/guests and
// runs them on ftvm's engine and, for comparison, on wazero. It is a test
// helper: only tests and benchmarks import it, so wazero never ends up in
// ftvm's binaries.
//
// A guest is a directory testdata/guests/<name> holding a main package of
// the module ftvm/testdata/guests. Build compiles it with
// GOOS=wasip1 GOARCH=wasm and caches the result in the user's cache
// directory (or the temporary directory), keyed by a hash of the guest's
// sources, the guests module's go.mod and go.sum, any shared code under
// testdata/guests/internal, and the toolchain version, so repeated test runs
// do not rebuild. The cache is safe for concurrent tests and processes: each
// build writes a temporary file and renames it into place.
package guesttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// mainModule is the module path of the repository whose testdata holds the
// guests.
const mainModule = "ftvm"

// Build returns the WebAssembly binary of the Go guest testdata/guests/<name>,
// building it if the cache has no binary for its current sources. It skips
// the test if no go toolchain is available and fails it if the build fails.
func Build(tb testing.TB, name string) []byte {
	tb.Helper()
	bin, err := build(name)
	if errors.Is(err, errNoToolchain) {
		tb.Skipf("guesttest: %v", err)
	}
	if err != nil {
		tb.Fatalf("guesttest: %v", err)
	}
	return bin
}

var errNoToolchain = errors.New("no go toolchain on PATH")

func build(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("bad guest name %q", name)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoToolchain, err)
	}
	root, err := GuestsDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, name)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("guest %q: no directory %s", name, dir)
	}
	version, err := goVersion(goTool)
	if err != nil {
		return nil, err
	}
	key, err := sourceKey(root, name, version)
	if err != nil {
		return nil, fmt.Errorf("guest %q: hashing sources: %w", name, err)
	}
	cacheDir, err := cacheDir()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(cacheDir, name+"-"+key+".wasm")
	if bin, err := os.ReadFile(out); err == nil && len(bin) > 0 {
		return bin, nil
	}

	tmp, err := os.CreateTemp(cacheDir, name+"-*.wasm.tmp")
	if err != nil {
		return nil, fmt.Errorf("guest %q: %w", name, err)
	}
	tmpName := tmp.Name()
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("guest %q: %w", name, err)
	}
	defer os.Remove(tmpName) // no-op once renamed

	cmd := exec.Command(goTool, "build", "-trimpath", "-o", tmpName, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("guest %q: go build: %w\n%s", name, err, stderr.Bytes())
	}
	bin, err := os.ReadFile(tmpName)
	if err != nil {
		return nil, fmt.Errorf("guest %q: %w", name, err)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return nil, fmt.Errorf("guest %q: caching the build: %w", name, err)
	}
	return bin, nil
}

// GuestsDir returns the absolute path of testdata/guests in the module
// ftvm, found by walking up from the working directory (a test runs in its
// package's directory).
func GuestsDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("guesttest: %w", err)
	}
	for dir := wd; ; {
		if isMainModule(filepath.Join(dir, "go.mod")) {
			return filepath.Join(dir, "testdata", "guests"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("guesttest: no go.mod of module %s above %s", mainModule, wd)
		}
		dir = parent
	}
}

func isMainModule(gomod string) bool {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == mainModule
		}
	}
	return false
}

func goVersion(goTool string) (string, error) {
	cmd := exec.Command(goTool, "env", "GOVERSION")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("guesttest: go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// sourceKey hashes everything the guest's build depends on within the
// repository, plus the toolchain version and the target.
func sourceKey(root, name, version string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "ftvm-guest v1\x00%s\x00wasip1/wasm\x00-trimpath\x00", version)
	var files []string
	for _, f := range []string{"go.mod", "go.sum"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			files = append(files, f)
		}
	}
	for _, sub := range []string{name, "internal"} {
		err := filepath.WalkDir(filepath.Join(root, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if sub == "internal" && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipDir
				}
				return err
			}
			if d.Type().IsRegular() {
				rel, err := filepath.Rel(root, path)
				if err != nil {
					return err
				}
				files = append(files, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	sort.Strings(files)
	for _, f := range files {
		fd, err := os.Open(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return "", err
		}
		st, err := fd.Stat()
		if err != nil {
			fd.Close()
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, st.Size())
		_, err = io.Copy(h, fd)
		fd.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func cacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "ftvm-guests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		dir = filepath.Join(os.TempDir(), "ftvm-guests")
		if err2 := os.MkdirAll(dir, 0o755); err2 != nil {
			return "", fmt.Errorf("guesttest: cache directory: %w", errors.Join(err, err2))
		}
	}
	return dir, nil
}
