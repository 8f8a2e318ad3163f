package edge

import "syscall"

// ChildProcAttr returns process attributes for a child that this process
// stops itself: in a process group of its own, so a Ctrl-C at the terminal
// reaches only this process, which then stops its children in order; and,
// on Linux, killed by the kernel (SIGKILL) if this process dies without
// stopping it, so nothing is left holding ports.
func ChildProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
