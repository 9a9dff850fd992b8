"""Counts timestamped UDP datagrams (from udp_timestamped_blast.py) and
reports their one-way latency: each carries its sequence number and the
sender's CLOCK_MONOTONIC, which every network namespace of the machine
shares.

Usage: udp_latency_sink.py PORT EXPECTED [ADDRESS]: bound to ADDRESS
(default 0.0.0.0; "::" for IPv6). Prints "ready" once bound, then,
when all EXPECTED sequence numbers arrived, or none came for 3 s after the
first, or none at all in 30 s, one JSON line: received, duplicates,
p50_ns, p99_ns, max_ns (null when nothing came)."""
import json
import socket
import struct
import sys
import time

port, expected = int(sys.argv[1]), int(sys.argv[2])
address = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
family = socket.AF_INET6 if ":" in address else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind((address, port))
print("ready", flush=True)

seen = set()
duplicates = 0
latencies = []
sock.settimeout(30)
while len(seen) < expected:
    try:
        data = sock.recv(64)
    except socket.timeout:
        break
    arrived = time.monotonic_ns()
    sock.settimeout(3)
    seq, sent = struct.unpack("!QQ", data[:16])
    if seq in seen:
        duplicates += 1
        continue
    seen.add(seq)
    latencies.append(arrived - sent)

latencies.sort()


def quantile(q):
    if not latencies:
        return None
    return latencies[min(len(latencies) - 1, int(q * len(latencies)))]


print(
    json.dumps(
        {
            "received": len(seen),
            "duplicates": duplicates,
            "p50_ns": quantile(0.5),
            "p99_ns": quantile(0.99),
            "max_ns": latencies[-1] if latencies else None,
        }
    ),
    flush=True,
)
