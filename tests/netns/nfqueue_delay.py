#!/usr/bin/python3
"""Delay every packet of some network namespaces' NFQUEUE by a fixed time.

    nfqueue_delay.py --delay-us 1000 --ready FILE NETNS [NETNS...]

tests/netns/cluster.sh uses this where the kernel has no sch_netem (the
2-core VMs here have HTB and TBF but no netem, and no loadable modules), so
`tc ... netem delay` cannot emulate latency. Instead each rank namespace has
an iptables rule that hands the packets leaving its veth to NFQUEUE queue 0
(queues are per network namespace), and this process holds each packet for
--delay-us before it lets the kernel send it on: one-way latency, as netem's
delay gives.

Only packet ids cross into user space (copy mode "meta": no payload), and
packets are released in arrival order with one batch verdict per wake-up (a
batch verdict accepts every queued id up to the one named), so the cost is
one wake-up per batch, not per packet. Large TCP sends stay one packet
(NFQA_CFG_F_GSO: the kernel does not cut them up for us).

The netlink protocol is spoken directly (linux/netfilter/nfnetlink_queue.h)
so that no Python binding has to be installed. One socket per namespace: a
queue belongs to the namespace its socket was created in, so the process
enters each namespace (setns) to create that namespace's socket.

Writes FILE once every queue is bound (the caller adds the iptables rules
only then: packets queued with no listener would be dropped), and runs until
SIGTERM or SIGINT.
"""
import argparse
import collections
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
PR_SET_TIMERSLACK = 29

NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 4
NF_ACCEPT = 1

QUEUE = 0            # the queue number of the iptables rule
QUEUE_MAXLEN = 65536  # packets held at once before the kernel drops (default 1024)


def attr(kind, data):
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


class Queue:
    """NFQUEUE queue 0 of one network namespace."""

    seq = 0

    def __init__(self, netns):
        self.netns = netns
        self.pending = collections.deque()  # (due time, packet id), in arrival order
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        # A burst must not overflow the socket: a lost message is a packet
        # never released (the kernel would drop it when the queue closes).
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self.config(attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
        self.config(attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
        self.config(attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)))
        self.config(attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO)) +
                    attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)))
        self.sock.setblocking(False)

    def message(self, kind, attrs, flags=NLM_F_REQUEST):
        Queue.seq += 1
        body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", QUEUE) + attrs
        return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags,
                           Queue.seq, 0) + body

    def config(self, attrs):
        """Sends one configuration message and checks the kernel's answer."""
        self.sock.send(self.message(NFQNL_MSG_CONFIG, attrs, NLM_F_REQUEST | NLM_F_ACK))
        reply = self.sock.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", reply, 16)
            if err:
                raise OSError(-err, f"NFQUEUE configuration in {self.netns}: {os.strerror(-err)}")

    def receive(self, delay):
        """Reads every queued packet's id; each is due `delay` seconds from now."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            due = time.monotonic() + delay
            at = 0
            while at + 16 <= len(data):
                size, kind, _, _, _ = struct.unpack_from("=IHHII", data, at)
                if size < 16:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    a = at + 20  # past nlmsghdr and nfgenmsg
                    while a + 4 <= at + size:
                        alen, atype = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == NFQA_PACKET_HDR:
                            (packet_id,) = struct.unpack_from("!I", data, a + 4)
                            self.pending.append((due, packet_id))
                            break
                        a += (alen + 3) & ~3
                at += (size + 3) & ~3

    def release(self, now):
        """Accepts every packet now due (one batch verdict); returns the next due time."""
        last = None
        while self.pending and self.pending[0][0] <= now:
            last = self.pending.popleft()[1]
        if last is not None:
            verdict = attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))
            self.sock.send(self.message(NFQNL_MSG_VERDICT_BATCH, verdict))
        return self.pending[0][0] if self.pending else None


def open_queues(names):
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    queues = []
    try:
        for name in names:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {name}: {os.strerror(err)}")
                queues.append(Queue(name))
            finally:
                os.close(fd)
    finally:
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
    return queues


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-us", type=int, required=True, help="one-way delay in microseconds")
    parser.add_argument("--ready", required=True, help="file written once every queue is bound")
    parser.add_argument("netns", nargs="+", help="network namespaces (names under /run/netns)")
    args = parser.parse_args()
    delay = args.delay_us / 1e6

    # SystemExit out of any wait: Python retries an interrupted wait itself.
    def stop(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Timers fire on time, not up to 50 us late (the default slack).
    ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    queues = open_queues(args.netns)
    with open(args.ready, "w") as f:
        f.write(f"{os.getpid()}\n")

    by_fd = {q.sock.fileno(): q for q in queues}
    while True:
        now = time.monotonic()
        next_due = None
        for q in queues:
            due = q.release(now)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        # select, not epoll or poll: those wait whole milliseconds (rounded
        # up), which would add up to a millisecond to every delay.
        timeout = None if next_due is None else max(0.0, next_due - time.monotonic())
        ready, _, _ = select.select(list(by_fd), [], [], timeout)
        for fd in ready:
            by_fd[fd].receive(delay)


if __name__ == "__main__":
    sys.exit(main())
