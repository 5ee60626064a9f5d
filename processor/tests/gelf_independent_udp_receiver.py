#!/usr/bin/env python3
"""An independent GELF UDP receiver, written from the GELF 1.1 spec with the
Python standard library only, so the processor's UDP output is checked by
code that shares nothing with it.

Usage: gelf_independent_udp_receiver.py COUNT [TIMEOUT_S]
Binds 127.0.0.1 on a free port and prints "PORT <n>" first. Then it
reassembles chunked messages (magic 0x1e 0x0f, 8-byte id, sequence, count),
inflates gzip or zlib payloads, and prints one line per message:
{"chunks": n, "compression": "gzip|zlib|none", "message": {...}}
It exits 0 after COUNT messages, 1 on timeout or on a payload that breaks
the spec (printed as ERROR ...).
"""
import gzip
import json
import socket
import sys
import time
import zlib


def inflate(payload):
    if payload[:2] == b"\x1f\x8b":
        return gzip.decompress(payload), "gzip"
    if payload[:1] == b"\x78":
        return zlib.decompress(payload), "zlib"
    return payload, "none"


def main():
    want = int(sys.argv[1])
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    print("PORT %d" % sock.getsockname()[1], flush=True)
    deadline = time.time() + timeout
    pending = {}
    got = 0
    while got < want:
        left = deadline - time.time()
        if left <= 0:
            print("ERROR timeout after %d of %d messages" % (got, want), flush=True)
            return 1
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            continue
        if data[:2] == b"\x1e\x0f":
            if len(data) < 12:
                print("ERROR chunk shorter than its header", flush=True)
                return 1
            msg_id, seq, count = data[2:10], data[10], data[11]
            if count < 1 or count > 128 or seq >= count:
                print("ERROR chunk %d of %d out of range" % (seq, count), flush=True)
                return 1
            parts = pending.setdefault(msg_id, [None] * count)
            if len(parts) != count:
                print("ERROR chunk count changed within one message", flush=True)
                return 1
            parts[seq] = data[12:]
            if any(p is None for p in parts):
                continue
            del pending[msg_id]
            payload, chunks = b"".join(parts), count
        else:
            payload, chunks = data, 1
        try:
            text, compression = inflate(payload)
            message = json.loads(text.decode("utf-8"))
        except Exception as e:  # a broken payload is a finding, not a crash
            print("ERROR undecodable payload: %s" % e, flush=True)
            return 1
        print(json.dumps({"chunks": chunks, "compression": compression, "message": message}), flush=True)
        got += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
