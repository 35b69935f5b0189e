package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/hashicorp/yamux"
)

// listen binds addr and announces the bound address on stdout.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()
	return ln, nil
}

// serverMain accepts yamux sessions (we are the yamux server: even stream
// ids) and echoes every stream the client opens.
func serverMain(args []string) int {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address to listen on")
	strip := fs.Bool("strip-target", false, "each stream starts with a SOCKS5-form address: log it, echo the rest")
	fs.Parse(args)

	ln, err := listen(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		return 1
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "server: accept:", err)
			return 1
		}
		go serveSession(conn, *strip)
	}
}

func serveSession(conn net.Conn, strip bool) {
	sess, err := yamux.Server(conn, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server: session:", err)
		conn.Close()
		return
	}
	defer sess.Close()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return // session over (go-away, EOF, protocol error)
		}
		go echoStream(st, strip)
	}
}

// echoStream copies the stream back to itself; Close after EOF is yamux's
// half-close (FIN), so the client reads to the end.
func echoStream(st *yamux.Stream, strip bool) {
	defer st.Close()
	var r io.Reader = st
	if strip {
		br := bufio.NewReader(st)
		target, err := readTarget(br)
		if err != nil {
			fmt.Fprintln(os.Stderr, "server: stream", st.StreamID(), "target:", err)
			return
		}
		fmt.Fprintln(os.Stderr, "server: stream", st.StreamID(), "target", target)
		r = br
	}
	io.Copy(st, r)
}

// readTarget reads ATYP ADDR PORT (the SOCKS5 address form).
func readTarget(r *bufio.Reader) (string, error) {
	atyp, err := r.ReadByte()
	if err != nil {
		return "", err
	}
	var host []byte
	switch atyp {
	case 1:
		host = make([]byte, 4)
	case 4:
		host = make([]byte, 16)
	case 3:
		n, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		host = make([]byte, n)
	default:
		return "", fmt.Errorf("bad ATYP %d", atyp)
	}
	var port [2]byte
	if _, err := io.ReadFull(r, host); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return "", err
	}
	h := string(host)
	if atyp != 3 {
		h = net.IP(host).String()
	}
	return net.JoinHostPort(h, fmt.Sprint(binary.BigEndian.Uint16(port[:]))), nil
}

// echoMain is a plain TCP echo server (no yamux): the far end for tests
// that put ferry between a yamux client and real TCP targets.
func echoMain(args []string) int {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address to listen on")
	fs.Parse(args)

	ln, err := listen(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		return 1
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo: accept:", err)
			return 1
		}
		go func(c net.Conn) {
			defer c.Close()
			io.Copy(c, c)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}(conn)
	}
}
