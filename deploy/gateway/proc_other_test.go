//go:build !linux

package gateway

import "os/exec"

// setPdeathsig: only Linux has it; the test's cleanups stop haproxy.
func setPdeathsig(*exec.Cmd) {}
