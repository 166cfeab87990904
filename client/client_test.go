package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"ftvm/storage"
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
	if _, err := Config(t.TempDir()+"/nosuch", "kv", nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing storage: %v", err)
	}
	dir := t.TempDir()
	if _, err := storage.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Config(dir, "kv", nil); err == nil || !strings.Contains(err.Error(), `no vm "kv"`) {
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
