/* capture.h - one pcap file (--capture FILE), written by its own thread.
 *
 * Every listener naming the same FILE shares one capture, and all workers
 * put packets into it through a spool (spool.h): putting never waits for
 * the disk. The writer thread fills in the TCP checksums (pcap_tcp.h),
 * writes the packets with libpcap's dump API (LINKTYPE_RAW: IPv4 and IPv6
 * in one file) and rotates the file when it exceeds --capture-rotate:
 * FILE, then FILE with ".1", ".2", ... inserted before its extension
 * ("cap.pcap", "cap.1.pcap", ...; no extension: "cap", "cap.1", ...).
 */
#ifndef FERRY_CAPTURE_H
#define FERRY_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

struct capture;

/* Opens (truncates) path and starts the writer. rotate: bytes, 0 = never.
 * "-" is stdout; files are opened by privfile_open (no symlink, 0600).
 * NULL with a one-line reason naming the file. */
struct capture *capture_open(const char *path, uint64_t rotate, char *err, size_t errlen);

/* One packet: headers then payload, taken at ts_us (wall clock, µs). 0, or
 * -1 if it was dropped (counted). */
int capture_put(struct capture *c, int64_t ts_us, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                size_t n);
/* Counts a packet lost before reaching the capture (filter buffer full). */
void capture_count_drop(struct capture *c);

/* Writes what is queued, closes the file, logs the totals, frees. */
void capture_close(struct capture *c);

/* The name of file number i (0 = path itself) into out. */
void capture_file_name(const char *path, unsigned i, char *out, size_t outlen);

#endif
