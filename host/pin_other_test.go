//go:build !linux

package host_test

import "errors"

func allowedCPUs() ([]int, error) { return nil, errors.ErrUnsupported }

func pinProcess(int, []int) error { return errors.ErrUnsupported }
