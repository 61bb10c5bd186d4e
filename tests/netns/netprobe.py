#!/usr/bin/python3
"""Measure the emulated network between ranks 0 and 1: round-trip time and TCP throughput.

    tests/netns/cluster.sh -n 2 --rate 200mbit --delay 1ms -- /usr/bin/python3 tests/netns/netprobe.py

Run as two processes under tests/netns/cluster.sh (mpirun sets
OMPI_COMM_WORLD_RANK; this is not an MPI program, only launched like one):
rank 1 listens on its emulated address, rank 0 connects to it, times
--pings one-byte round trips (TCP_NODELAY: each is one packet each way) and
then sends --mib MiB, timed until rank 1 acknowledges the last byte. Rank 0
prints one line. Expected with --delay D and --rate R: RTT about 2 D (the
delay is on each rank's egress, so once each way) and throughput a little
under R (TCP/IP headers are inside R). Other ranks do nothing. Bounded:
every socket operation times out after 60 s.
"""
import argparse
import os
import socket
import statistics
import sys
import time

PORT = 5399  # on the emulated network only, which no other process shares


def serve(address):
    with socket.create_server((address, PORT)) as server:
        server.settimeout(60)
        conn, _ = server.accept()
    with conn:
        conn.settimeout(60)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:  # echo the pings until the bulk transfer announces itself
            b = conn.recv(1)
            if not b or b == b"B":
                break
            conn.sendall(b)
        size = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "big")
        buf = bytearray(1 << 20)
        got = 0
        while got < size:
            n = conn.recv_into(buf)
            if n == 0:
                raise ConnectionError("rank 0 closed the connection mid-transfer")
            got += n
        conn.sendall(b"k")


def probe(address, pings, mib):
    deadline = time.monotonic() + 60
    while True:  # rank 1 may not be listening yet
        try:
            conn = socket.create_connection((address, PORT), timeout=60)
            break
        except (ConnectionRefusedError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = []
        for _ in range(pings):
            t = time.perf_counter()
            conn.sendall(b"p")
            if conn.recv(1) != b"p":
                raise ConnectionError("bad echo")
            rtts.append((time.perf_counter() - t) * 1e3)
        size = mib << 20
        conn.sendall(b"B" + size.to_bytes(8, "big"))
        chunk = b"\0" * (1 << 20)
        t = time.perf_counter()
        for _ in range(mib):
            conn.sendall(chunk)
        if conn.recv(1) != b"k":
            raise ConnectionError("no acknowledgement")
        seconds = time.perf_counter() - t
    print(f"netprobe: rtt median {statistics.median(rtts):.3f} ms (min {min(rtts):.3f}, "
          f"max {max(rtts):.3f}, {pings} pings); {mib} MiB in {seconds:.3f} s = "
          f"{size * 8 / seconds / 1e6:.1f} Mbit/s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--server", default="10.213.0.2", help="rank 1's address")
    args = parser.parse_args()
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "-1"))
    if rank == 1:
        serve(args.server)
    elif rank == 0:
        probe(args.server, args.pings, args.mib)
    elif rank < 0:
        print("netprobe: not started by mpirun (no OMPI_COMM_WORLD_RANK)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
