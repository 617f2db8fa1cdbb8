package gateway

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill haproxy when the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL).
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
