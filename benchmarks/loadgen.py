"""Load generator: closed-loop HTTP clients on keep-alive connections, in a process of its own.

Each client thread sends the same POST again and again on its own connection (a new request only
when the previous answer is complete) and records the latency of every request. Prints one JSON
object on stdout: latencies (seconds, in completion order), statuses, errors, the measured wall
interval. Runs until `--requests` requests are done or `--duration` seconds passed, whichever comes
first; bounded either way, and only ever against a loopback address.

    python -m benchmarks.loadgen --url http://127.0.0.1:8080/cds-services/x --body req.json \
        --clients 4 --requests 400 --warmup 20
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from urllib.parse import urlsplit


class Client:
    """One keep-alive HTTP/1.1 connection sending one pre-encoded request."""

    def __init__(self, host: str, port: int, request: bytes, timeout: float):
        self.host, self.port, self.request, self.timeout = host, port, request, timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def call(self) -> tuple[int, bytes]:
        """Send the request, return (status, body). Reconnects once if the server closed the connection."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(self.request)
                return self._read_response()
            except (ConnectionError, socket.timeout, OSError):
                self.close()
                if attempt:
                    raise
        raise ConnectionError("unreachable")

    def _read_response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the headers")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = self.sock.recv(max(65536, length - len(rest)))
            if not chunk:
                raise ConnectionError("closed in the body")
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body


def build_request(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise SystemExit(f"refusing to load {host}: the load generator only targets loopback addresses")
    port = parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run(
    url: str,
    body: bytes,
    clients: int,
    requests: int,
    duration: float,
    warmup: int,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> dict:
    host, port, raw = build_request(url, body, headers)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [requests]
    warmed = threading.Barrier(clients + 1)
    go = threading.Event()
    window: dict[str, float] = {}

    def take() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def worker(index: int) -> None:
        client = Client(host, port, raw, timeout)
        try:
            for _ in range(warmup):  # per client: connection set up, caches and JITs warm
                try:
                    client.call()
                except OSError:
                    client.close()
            warmed.wait()
            go.wait()
            deadline = window["deadline"]
            mine: list[float] = []
            my_statuses: dict[str, int] = {}
            while time.monotonic() < deadline and take():
                t0 = time.perf_counter()
                try:
                    status, _ = client.call()
                except (OSError, ValueError) as exc:
                    with lock:
                        errors.append(type(exc).__name__)
                    client.close()
                    continue
                mine.append(time.perf_counter() - t0)
                my_statuses[str(status)] = my_statuses.get(str(status), 0) + 1
            with lock:
                latencies.extend(mine)
                for k, v in my_statuses.items():
                    statuses[k] = statuses.get(k, 0) + v
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    waiting = time.perf_counter()
    warmed.wait()  # every client has warmed up: open the measured window
    window["deadline"] = time.monotonic() + duration
    began = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    ended = time.perf_counter()
    return {
        "clients": clients,
        "latencies": latencies,
        "statuses": statuses,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall": ended - began,
        "warmup_seconds": began - waiting,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop HTTP load on loopback")
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file holding the request body")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300, help="requests to measure (all clients together)")
    parser.add_argument("--duration", type=float, default=60.0, help="stop measuring after this many seconds")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests per client first")
    parser.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    args = parser.parse_args(argv)
    with open(args.body, "rb") as f:
        body = f.read()
    headers = dict(h.split(":", 1) for h in args.header)
    result = run(
        args.url,
        body,
        args.clients,
        args.requests,
        args.duration,
        args.warmup,
        headers={k.strip(): v.strip() for k, v in headers.items()},
    )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
