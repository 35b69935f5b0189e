#!/usr/bin/env python3
"""Writes the seeds of fuzz_yamux into fuzz/corpus/yamux/, from the vectors
of tests/unit/test_yamux.c.

Input layout (fuzz/fuzz_yamux.c): byte 0 = side (bit 0: 1 client, 0 server)
| (max_streams - 1) << 1 (bits 1-3) | piece-size code << 4; then the bytes
the peer sent. Run from the repository root: python3 fuzz/yamux_seeds.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "yamux")
DATA, WINDOW, PING, GOAWAY = range(4)
SYN, ACK, FIN, RST = 1, 2, 4, 8
W = 256 * 1024


def hdr(typ, flags, sid, length, version=0):
    return struct.pack(">BBHII", version, typ, flags, sid, length)


def data(flags, sid, payload):
    return hdr(DATA, flags, sid, len(payload)) + payload


def side(client, max_streams=4, piece=3):
    return bytes([(1 if client else 0) | (max_streams - 1) << 1 | piece << 4])


SEEDS = {
    "server_stream": side(False) + hdr(WINDOW, SYN, 1, 0) + data(0, 1, b"hello") + hdr(DATA, 0, 1, 0)
    + hdr(WINDOW, 0, 1, 1000) + data(SYN, 3, b"syn with data") + data(FIN, 1, b"bye")
    + hdr(WINDOW, FIN, 3, 0) + hdr(WINDOW, 0, 1, 5),
    "all_flags": side(False) + data(SYN | FIN, 1, b"one shot") + hdr(WINDOW, SYN | ACK, 3, 7)
    + data(SYN | RST, 5, b"dropped") + hdr(WINDOW, RST | FIN, 3, 9) + data(0, 5, b"late")
    + hdr(WINDOW, 0x10, 1, 2),
    "client_replies": side(True) + hdr(WINDOW, ACK, 1, 0) + data(SYN, 2, b"server opens")
    + hdr(PING, SYN, 0, 42) + hdr(PING, ACK, 0, 0xFFFFFFFF) + hdr(GOAWAY, 0, 0, 0)
    + data(FIN, 2, b"still open") + hdr(GOAWAY, 0, 0, 2),
    "too_many": side(False, 2) + b"".join(hdr(WINDOW, SYN, i, 0) for i in (1, 3, 5))
    + data(0, 5, b"skipped") + hdr(WINDOW, RST, 1, 0) + data(SYN, 7, b"room again"),
    "full_window": side(False, 1, 15) + hdr(DATA, SYN, 1, 4096) + bytes(4096) + hdr(DATA, 0, 1, W - 4096)
    + bytes(64),
    "window_exceeded": side(False) + data(SYN, 1, b"abc") + hdr(DATA, 0, 1, W - 2),
    "window_overflow": side(False) + hdr(WINDOW, SYN, 1, 0xFFFFFFFF - W) + hdr(WINDOW, 0, 1, 1),
    "bad_version": side(False) + hdr(PING, SYN, 0, 1) + hdr(PING, SYN, 0, 1, version=1),
    "bad_type": side(False) + hdr(7, 0, 1, 0),
    "ping_on_stream": side(False) + hdr(PING, SYN, 9, 0),
    "goaway_on_stream": side(True) + hdr(GOAWAY, 0, 2, 0),
    "data_stream0": side(False) + data(0, 0, b"x"),
    "never_opened": side(False) + data(0, 1, b"x"),
    "wrong_parity": side(False) + hdr(WINDOW, SYN, 2, 0),
    "id_reuse": side(False) + hdr(WINDOW, SYN | RST, 3, 0) + hdr(WINDOW, SYN, 3, 0),
    "data_after_fin": side(False) + data(SYN | FIN, 1, b"a") + data(0, 1, b"b"),
    "second_fin": side(False) + data(SYN | FIN, 1, b"a") + hdr(WINDOW, FIN, 1, 0),
    "closed_stream_big": side(False) + hdr(WINDOW, SYN | RST, 1, 0) + hdr(DATA, 0, 1, W + 1),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, blob in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(blob)


if __name__ == "__main__":
    main()
