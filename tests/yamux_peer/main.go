// yamux_peer: the reference yamux peer for ferry's tests, built on
// hashicorp/yamux (the library whose spec.md ferry's proto/yamux.c follows).
//
//	yamux_peer server -listen ADDR [-strip-target]
//	yamux_peer client -connect ADDR -streams N -bytes M [-target HOST:PORT]
//	yamux_peer echo   -listen ADDR
//
// Servers print "listening HOST:PORT" on stdout once they accept, so a
// harness can pass port 0 and read the port back. See client.go and
// server.go; build offline with build.sh.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: yamux_peer server -listen ADDR [-strip-target]\n"+
		"       yamux_peer client -connect ADDR -streams N -bytes M [-target HOST:PORT] [-timeout SEC]\n"+
		"       yamux_peer echo -listen ADDR")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "client":
		os.Exit(clientMain(args))
	case "server":
		os.Exit(serverMain(args))
	case "echo":
		os.Exit(echoMain(args))
	default:
		usage()
	}
}
