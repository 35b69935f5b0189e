package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

type result struct {
	idx        int
	id         uint32
	sent, got  int64
	want, have []byte
	err        error
}

// clientMain opens -streams streams at once over one TCP connection (we are
// the yamux client: odd ids); each sends -bytes of its own deterministic
// data and must read back exactly what it sent.
func clientMain(args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("connect", "", "yamux server to connect to (HOST:PORT)")
	streams := fs.Int("streams", 4, "streams to open at once")
	size := fs.Int64("bytes", 1<<20, "bytes each stream sends")
	target := fs.String("target", "", "prepend HOST:PORT in SOCKS5 address form to each stream (not echoed)")
	timeout := fs.Int("timeout", 60, "give up after this many seconds")
	fs.Parse(args)
	if *addr == "" || *streams < 1 || *size < 0 {
		fmt.Fprintln(os.Stderr, "client: need -connect, -streams >= 1, -bytes >= 0")
		return 2
	}
	var prefix []byte
	if *target != "" {
		var err error
		if prefix, err = socksAddr(*target); err != nil {
			fmt.Fprintln(os.Stderr, "client: -target:", err)
			return 2
		}
	}
	time.AfterFunc(time.Duration(*timeout)*time.Second, func() {
		fmt.Fprintf(os.Stderr, "client: timeout after %d s\n", *timeout)
		os.Exit(1)
	})

	conn, err := net.Dial("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	sess, err := yamux.Client(conn, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client: session:", err)
		return 1
	}
	defer sess.Close()

	start := time.Now()
	results := make([]result, *streams)
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = runStream(sess, i, *size, prefix)
		}(i)
	}
	wg.Wait()
	return report(results, *size, time.Since(start))
}

func report(results []result, size int64, elapsed time.Duration) int {
	bad := 0
	for _, r := range results {
		switch {
		case r.err != nil:
			fmt.Printf("FAIL stream %d (id %d): %v\n", r.idx, r.id, r.err)
			bad++
		case r.got != r.sent || !bytes.Equal(r.want, r.have):
			fmt.Printf("MISMATCH stream %d (id %d): sent %d bytes sha256 %x, got %d bytes sha256 %x\n",
				r.idx, r.id, r.sent, r.want, r.got, r.have)
			bad++
		}
	}
	total := float64(size) * float64(len(results))
	fmt.Printf("%s: %d streams x %d bytes echoed, %d bad, %.3f s, %.1f MB/s each way\n",
		map[bool]string{true: "ok", false: "FAILED"}[bad == 0], len(results), size, bad,
		elapsed.Seconds(), total/elapsed.Seconds()/1e6)
	if bad > 0 {
		return 1
	}
	return 0
}

// runStream sends and receives at the same time: the echo comes back while
// we still write, and yamux's windows would stall a sequential peer.
//
// It reads the echo by count and closes only then, rather than half-closing
// after the last write and reading to EOF: Debian 12's yamux (a 2019
// snapshot) makes Read return EOF as soon as the stream is closed locally
// and its buffer is momentarily empty, so a half-close would cut the echo
// short. The Close still sends FIN, which ends the server's echo.
func runStream(sess *yamux.Session, i int, size int64, prefix []byte) result {
	r := result{idx: i}
	st, err := sess.OpenStream()
	if err != nil {
		r.err = err
		return r
	}
	defer st.Close()
	r.id = st.StreamID()

	got := sha256.New()
	done := make(chan error, 1)
	go func() {
		n, err := io.CopyN(got, st, size)
		r.got = n
		done <- err
	}()
	sent := sha256.New()
	r.sent, err = writeData(st, i, size, prefix, sent)
	if rerr := <-done; err == nil {
		err = rerr
	}
	r.err = err
	r.want, r.have = sent.Sum(nil), got.Sum(nil)
	return r
}

// writeData writes stream i's data: a tag line, then bytes from a PRNG
// seeded with i, cut to size. Deterministic, and different per stream, so
// crossed streams cannot pass.
func writeData(w io.Writer, i int, size int64, prefix []byte, h hash.Hash) (int64, error) {
	if len(prefix) > 0 {
		if _, err := w.Write(prefix); err != nil {
			return 0, err
		}
	}
	src := io.MultiReader(bytes.NewReader([]byte(fmt.Sprintf("yamux-peer stream %d\n", i))),
		rand.New(rand.NewSource(int64(0x5eed+i))))
	return io.CopyN(io.MultiWriter(w, h), src, size)
}

// socksAddr encodes HOST:PORT as ATYP ADDR PORT.
func socksAddr(hostport string) ([]byte, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, err
	}
	var b []byte
	if ip := net.ParseIP(host); ip == nil {
		if len(host) == 0 || len(host) > 255 {
			return nil, fmt.Errorf("bad host %q", host)
		}
		b = append([]byte{3, byte(len(host))}, host...)
	} else if ip4 := ip.To4(); ip4 != nil {
		b = append([]byte{1}, ip4...)
	} else {
		b = append([]byte{4}, ip.To16()...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port)), nil
}
