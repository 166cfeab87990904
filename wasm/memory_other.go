//go:build !linux

package wasm

// Elsewhere linear memory lives on the Go heap (see memory_linux.go).

func (m *Memory) mapMemory(uint32) bool { return false }

func (m *Memory) commit(int, int) bool { return false }

func (m *Memory) release() bool { return false }

func (m *Memory) free() {}
