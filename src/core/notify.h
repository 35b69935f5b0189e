/* notify.h - tell a service manager how ferry is doing: systemd's notify
 * protocol (sd_notify(3)), spoken directly, without libsystemd.
 *
 * When the service manager sets NOTIFY_SOCKET (a path, or "@name" for an
 * abstract socket), each message is one datagram of "KEY=VALUE" lines, e.g.
 * "READY=1\nSTATUS=1 listener up". Without it every call does nothing.
 * Best effort: a message that cannot be sent at once is dropped; nothing
 * here blocks or fails ferry. Main thread only (one process-wide socket).
 */
#ifndef FERRY_NOTIFY_H
#define FERRY_NOTIFY_H

/* Connects to $NOTIFY_SOCKET while the path is still reachable: call it
 * before --chroot and --run-as take effect. 1 connected, 0 no (or an
 * unusable) NOTIFY_SOCKET, -1 it could not be reached (errno set). The
 * environment is left as it is. */
int notify_open(void);

/* Sends msg as one datagram (no trailing newline needed). 0 sent, -1 not
 * (not open, or the receiver's queue is full: dropped). */
int notify_send(const char *msg);

void notify_close(void);

#endif
