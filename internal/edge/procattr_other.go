//go:build !linux

package edge

import "syscall"

// ChildProcAttr returns nil: without Linux's Pdeathsig a child in a process
// group of its own would outlive this process if it died, so children stay
// in the terminal's group and get its Ctrl-C too.
func ChildProcAttr() *syscall.SysProcAttr { return nil }
