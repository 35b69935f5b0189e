#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz_session into fuzz/corpus/session/.

Input layout (fuzz/fuzz_session.c): byte 0 = mode | flags, bytes 1-2 = the
early data length code (early_len()), then what the client sends first.
Run from the repository root: python3 fuzz/session_seeds.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "session")
SINK = 29171                     # fuzz_session.c's SINK_PORT

# Modes (byte 0 & 7) and flags.
SOCKS, SOCKS_AUTH, SS_LOCAL, SS_TUNNEL, SS_SERVER, SS_SERVER_SEALED, SS_LOCAL_TOXIC, SOCKS_TOXIC = range(8)
SHUT_WR, PATIENT, ECHO, RST, NO_READ = 0x08, 0x10, 0x20, 0x40, 0x80


def early_len(v):
    """fuzz_session.c's early_len(): code -> bytes."""
    low = v & 0x3FFF
    if v >> 14 == 0:
        return low
    if v >> 14 == 1:
        return 65536 - 320 + low % 640
    if v >> 14 == 2:
        at = ((low >> 10) % 13) * 16384 + (low & 0x3FF)
        return at - 512 if at > 512 else 0
    return low * 13


def early(n):
    """A code for exactly n early bytes if there is one, else the nearest above."""
    best = None
    for v in range(0x10000):
        got = early_len(v)
        if got == n:
            return v
        if got > n and (best is None or got < early_len(best)):
            best = v
    return best


def s5_req(atyp, addr, port=SINK, cmd=1):
    if atyp == 3:
        addr = bytes([len(addr)]) + addr
    return bytes([5, cmd, 0, atyp]) + addr + struct.pack("!H", port)


V4 = bytes([127, 0, 0, 1])
V6 = bytes(15) + b"\x01"
GREET = b"\x05\x01\x00"
AUTH = b"\x05\x01\x02" + b"\x01\x04fuzz\x04fuzz"


def s4(host_v4=V4, user=b"", port=SINK, domain=None):
    ip = bytes([0, 0, 0, 1]) if domain is not None else host_v4
    r = struct.pack("!BBH", 4, 1, port) + ip + user + b"\0"
    return r + (domain + b"\0" if domain is not None else b"")


def ss_addr(atyp, addr, port=SINK):
    if atyp == 3:
        addr = bytes([len(addr)]) + addr
    return bytes([atyp]) + addr + struct.pack("!H", port)


SEEDS = {
    # The double free of c9fb620: the target re-encoded as a 19-byte IPv6
    # header behind a buffer of early data that came with the request.
    "repro_sslocal_socks5_domain_v6_64k": (SS_LOCAL | SHUT_WR, 65536, GREET + s5_req(3, b"::1")),
    "repro_sslocal_socks4a_v6_64k": (SS_LOCAL | SHUT_WR, 65536, s4(domain=b"::")),
    "repro_tunnel_70k": (SS_TUNNEL | SHUT_WR, 70000, b"GET / HTTP/1.0\r\n\r\n"),
    # What fuzzing found on its own in seconds before the fix, without the
    # three above (the largest early length, a tunnel whose server resolves).
    "found_tunnel_213k": (SS_TUNNEL | SHUT_WR | ECHO, 0x3FFF * 13, b"\xff\x01\x00\x26\x00"),
    "sslocal_socks4a_v6_loopback_64k": (SS_LOCAL | SHUT_WR, 65536, s4(domain=b"::1")),
    "sslocal_socks5_domain_v6_64k_echo": (SS_LOCAL | ECHO, 65536, GREET + s5_req(3, b"::1")),
    "sslocal_socks5_v4": (SS_LOCAL | SHUT_WR | ECHO, 1000, GREET + s5_req(1, V4)),
    "sslocal_socks5_v6_200k": (SS_LOCAL | SHUT_WR, 200000, GREET + s5_req(4, V6)),
    "sslocal_socks5_domain_name": (SS_LOCAL | SHUT_WR, 16384, GREET + s5_req(3, b"sink.ferry.test")),
    "sslocal_socks5_no_data_patient": (SS_LOCAL | PATIENT, 0, GREET + s5_req(1, V4)),
    "sslocal_toxic_64k": (SS_LOCAL_TOXIC | SHUT_WR | ECHO, 65536, GREET + s5_req(3, b"::1")),
    "tunnel_small": (SS_TUNNEL | SHUT_WR | ECHO, 0, b"hello"),
    "tunnel_64k_rst": (SS_TUNNEL | RST, 65536, b""),
    "socks5_v4": (SOCKS | SHUT_WR, 100, GREET + s5_req(1, V4)),
    "socks5_v6_echo": (SOCKS | SHUT_WR | ECHO, 1000, GREET + s5_req(4, V6)),
    "socks5_domain_64k": (SOCKS | SHUT_WR, 65536, GREET + s5_req(3, b"sink.ferry.test")),
    "socks5_domain_v6_literal_64k": (SOCKS | SHUT_WR, 65536, GREET + s5_req(3, b"::1")),
    "socks5_denied_target": (SOCKS, 0, GREET + s5_req(1, bytes([192, 0, 2, 1]), 80)),
    "socks5_bind": (SOCKS, 0, GREET + s5_req(1, V4, cmd=2)),
    # UDP ASSOCIATE: the connection becomes the association's control
    # channel (SESS_HOLDING); bytes after the request are read and dropped.
    "socks5_udp_associate": (SOCKS | SHUT_WR, 1000, GREET + s5_req(1, bytes(4), 0, cmd=3)),
    "socks5_udp_associate_patient": (SOCKS | PATIENT, 0, GREET + s5_req(1, V4, 0, cmd=3)),
    "socks_auth_udp_associate": (SOCKS_AUTH | SHUT_WR, 0, AUTH + s5_req(4, bytes(16), 0, cmd=3)),
    "socks5_split_greeting": (SOCKS, 0, b"\x05\x02\x00"),
    "socks5_echo_no_read_200k": (SOCKS | ECHO | NO_READ, 200000, GREET + s5_req(1, V4)),
    "socks4_v4": (SOCKS | SHUT_WR, 100, s4(user=b"fuzz")),
    "socks4a_domain": (SOCKS | SHUT_WR | ECHO, 32768, s4(domain=b"sink.ferry.test")),
    "socks_auth_socks5": (SOCKS_AUTH | SHUT_WR, 16384, AUTH + s5_req(1, V4)),
    "socks_auth_bad_password": (SOCKS_AUTH, 0, b"\x05\x01\x02\x01\x04fuzz\x04nope"),
    "socks_auth_socks4": (SOCKS_AUTH | SHUT_WR, 65536, s4()),
    "socks_toxic_echo": (SOCKS_TOXIC | ECHO, 120000, GREET + s5_req(1, V4)),
    # ss-server, raw bytes: a salt and less than / just one length block.
    "ss_server_salt_plus_17": (SS_SERVER, 0, bytes(range(32 + 17))),
    "ss_server_salt_plus_18": (SS_SERVER, 0, bytes((i * 7 + 3) & 0xFF for i in range(32 + 18))),
    "ss_server_junk_64k": (SS_SERVER | SHUT_WR, 65536, bytes(range(64))),
    # ss-server, the harness seals the plaintext with the server's key.
    "ss_server_sealed_v4": (SS_SERVER_SEALED | SHUT_WR | ECHO, 100, ss_addr(1, V4) + b"hello"),
    "ss_server_sealed_domain_64k": (SS_SERVER_SEALED | SHUT_WR, 65536, ss_addr(3, b"sink.ferry.test")),
    "ss_server_sealed_v6_only_addr": (SS_SERVER_SEALED | PATIENT, 0, ss_addr(4, V6)),
    "ss_server_sealed_bad_atyp": (SS_SERVER_SEALED, 0, b"\x09abc"),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (mode, n, body) in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([mode]) + struct.pack("!H", early(n)) + body)


if __name__ == "__main__":
    main()
