/* pcap_tcp.h - synthesized TCP/IP packets for one TCP connection (a "leg"),
 * so that a capture file shows what crossed a socket as if it had been
 * sniffed on the wire (pure: no sockets, no clock, no allocation).
 *
 * A leg has two sides: 0 is the side that opened the connection (the
 * client on the client leg, ferry on the upstream leg), 1 the other. Each
 * side has its own sequence space starting at its ISN. The functions below
 * emit whole exchanges through a callback (header bytes + payload), keeping
 * the invariant that every segment's ack number is exactly what the other
 * side has sent so far, and that every data segment is acknowledged at once
 * by a pure ACK: Wireshark then sees no gap, no "ACKed unseen segment" and
 * no full window, whatever the window size, even for a capture file that
 * starts in the middle of the connection (after a rotation).
 *
 * Packets are raw IP (LINKTYPE_RAW): IPv4 or IPv6 by the endpoints' family.
 * The TCP checksum covers the payload, so it is left 0 here and filled in
 * by ptcp_checksum_fill() on the assembled packet: the capture writer thread
 * does that, not the worker that relays the bytes. The IPv4 header checksum
 * is computed at once (20 bytes).
 */
#ifndef FERRY_PCAP_TCP_H
#define FERRY_PCAP_TCP_H

#include <stddef.h>
#include <stdint.h>

#define PTCP_HDR_MAX 60            /* IPv6 (40) + TCP without options (20) */
/* Largest payload per segment: IPv4's total length is 16 bits, so a
 * segment stays below 65535 with room for the headers; longer chunks are
 * split. */
#define PTCP_MAX_PAYLOAD 64000

enum { PTCP_FIN = 0x01, PTCP_SYN = 0x02, PTCP_RST = 0x04, PTCP_PSH = 0x08, PTCP_ACK = 0x10 };

struct ptcp_end {
    uint8_t family;                /* 4 or 6 */
    uint8_t ip[16];                /* 4 or 16 bytes used */
    uint16_t port;
};

struct ptcp_leg {
    struct ptcp_end end[2];
    uint32_t seq[2];               /* next sequence number side i sends */
    uint16_t ip_id[2];             /* IPv4 identification, per side */
    uint8_t fin[2];                /* side i has sent its FIN */
    uint8_t reset;                 /* an RST ended the leg */
};

/* Receives one packet: hdr (IP + TCP header, hlen bytes) followed by the
 * payload (n bytes, may be 0). Both are valid only during the call. */
typedef void (*ptcp_emit_fn)(void *ctx, const uint8_t *hdr, size_t hlen, const uint8_t *payload, size_t n);

/* Both ends must have the same family. isn[i]: side i's initial sequence. */
void ptcp_leg_init(struct ptcp_leg *l, const struct ptcp_end *side0, const struct ptcp_end *side1,
                   uint32_t isn0, uint32_t isn1);

/* The three-way handshake: SYN (0), SYN-ACK (1), ACK (0). */
void ptcp_handshake(struct ptcp_leg *l, ptcp_emit_fn emit, void *ctx);
/* n bytes from side `from`, split into segments of at most
 * PTCP_MAX_PAYLOAD, each followed by the other side's ACK. Nothing after
 * that side's FIN or a reset. */
void ptcp_data(struct ptcp_leg *l, int from, const uint8_t *p, size_t n, ptcp_emit_fn emit, void *ctx);
/* FIN from side `from`, acknowledged by the other side. Once only. */
void ptcp_fin(struct ptcp_leg *l, int from, ptcp_emit_fn emit, void *ctx);
/* RST from side `from`; the leg is over. */
void ptcp_rst(struct ptcp_leg *l, int from, ptcp_emit_fn emit, void *ctx);

/* Computes and stores the TCP checksum of a whole packet as built above
 * (headers then payload, len bytes). Returns 0, or -1 if it is not one. */
int ptcp_checksum_fill(uint8_t *pkt, size_t len);
/* Ones' complement sum (RFC 1071), folded, not inverted: for the tests. */
uint16_t ptcp_csum_fold(const uint8_t *p, size_t n, uint32_t initial);

#endif
