// Command gofloor does nothing: make bench execs it as the sshd helper is
// exec'd, so that the report shows what starting any Go program costs on
// the machine, apart from what the helper itself does.
package main

func main() {}
