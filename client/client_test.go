package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"ftvm/internal/etcdtest"
	"ftvm/session"
	"ftvm/storage"
	"ftvm/storage/backend"
	"runtime"
	"time"
)

func TestTargets(t *testing.T) {
	for _, tc := range []struct{ vm, listener, target string }{
		{"kv", "", "kv"},
		{"web", "127.0.0.1:8080", "web 127.0.0.1:8080"},
	} {
		if got := Target(tc.vm, tc.listener); got != tc.target {
			t.Errorf("Target(%q, %q) = %q, want %q", tc.vm, tc.listener, got, tc.target)
		}
		if vm, l := ParseTarget(tc.target); vm != tc.vm || l != tc.listener {
			t.Errorf("ParseTarget(%q) = %q, %q", tc.target, vm, l)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	if _, _, err := Config(t.TempDir()+"/nosuch", "kv", nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing storage: %v", err)
	}
	dir := t.TempDir()
	if _, err := storage.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Config(dir, "kv", nil); err == nil || !strings.Contains(err.Error(), `no VM "kv" in shared storage`) {
		t.Errorf("unknown VM: %v", err)
	}
}

func TestResolverWithoutPrimary(t *testing.T) {
	d, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolver(d, "kv")(context.Background())
	if !errors.Is(err, ErrNoPrimary) {
		t.Fatalf("resolving a VM with no owner: %v, want ErrNoPrimary", err)
	}
}

// TestConfigListeners: a listener must be one of the VM's, and named when
// it has several.
func TestConfigListeners(t *testing.T) {
	dir := t.TempDir()
	d, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	spec := storage.VMSpec{Name: "two", Listeners: []string{"127.0.0.1:7001", "127.0.0.1:7002"}}
	if err := d.PutVM(spec, []byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ listener, want string }{
		{"", "has 2 listeners"},
		{"127.0.0.1:9", `no listener "127.0.0.1:9"`},
		{"127.0.0.1:7002", ""},
	} {
		cfg, _, err := Config(dir, "two", &Options{Listener: tc.listener})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("listener %q: %v", tc.listener, err)
		case tc.want == "" && cfg.Target != "two 127.0.0.1:7002":
			t.Errorf("listener %q: target %q", tc.listener, cfg.Target)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("listener %q: %v, want an error with %q", tc.listener, err, tc.want)
		}
	}
	spec.Stopped = true
	if err := d.PutVM(spec, []byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Fatal(err)
	}
	cfg, store, err := Config(dir, "two", &Options{Listener: "127.0.0.1:7001"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := cfg.Resolve(context.Background()); !errors.Is(err, session.ErrRefused) {
		t.Fatalf("resolving a stopped VM: %v, want a refusal", err)
	}
}

// TestStoreReleased: Config's store is the caller's to close, and Dial
// closes its own, also when it fails: opening sessions again and again
// against etcd leaves no etcd client behind (each holds goroutines and
// connections).
func TestStoreReleased(t *testing.T) {
	loc := "etcd://" + etcdtest.Start(t)
	s, closer, err := backend.Open(loc, backend.Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutVM(storage.VMSpec{Name: "kv", Listeners: []string{"127.0.0.1:7001"}}, []byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Fatal(err)
	}
	closer.Close()
	before := runtime.NumGoroutine()
	for range 20 {
		_, store, err := Config(loc, "kv", nil)
		if err != nil {
			t.Fatal(err)
		}
		store.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if _, err := Dial(ctx, loc, "kv", &Options{Timeout: 50 * time.Millisecond}); err == nil {
			t.Fatal("a session opened with a VM that has no primary")
		}
		cancel()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+20 {
		t.Fatalf("%d goroutines after 40 stores opened and closed, %d before: the stores were not released", n, before)
	}
}
