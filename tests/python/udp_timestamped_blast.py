"""Sends COUNT UDP datagrams to HOST:PORT at RATE per second, each carrying
its sequence number and CLOCK_MONOTONIC at sending (for
udp_latency_sink.py). Paced per millisecond, so a slow moment is caught up
at once rather than stretching the run. Prints how many it sent."""
import socket
import struct
import sys
import time

host, port, rate, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((host, port))
start = time.monotonic_ns()
sent = 0
while sent < count:
    due = min(count, (time.monotonic_ns() - start) * rate // 1_000_000_000 + 1)
    while sent < due:
        sock.send(struct.pack("!QQ", sent, time.monotonic_ns()) + bytes(32))
        sent += 1
    time.sleep(0.0005)
print(sent, flush=True)
