"""HTTP load on a server of this machine: open loop (a fixed arrival rate) and closed loop (saturation).

Standard library only (asyncio, HTTP/1.1 spoken by a small protocol class), for the benchmarks that measure an
endpoint's latency under load. Traffic goes to loopback addresses only: any other host is refused.

    from openloop import gunicorn_serving, open_loop, saturate

    env = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/dialoog_sendbench"}
    with gunicorn_serving(wsgi_app="benchmarks.hello_wsgi:application", env=env, workers=3) as (host, port):
        headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
        result = open_loop(host=host, port=port, paths=lambda i: "/bench/hello/", rate=300, duration=20,
                           headers=headers, warmup=3)
        print(result.summary())  # p50_ms, p99_ms, ..., gen_late_max_ms
        print(saturate(host=host, port=port, paths=lambda i: "/bench/hello/", concurrency=8, duration=10,
                       headers=headers).summary()["throughput_rps"])

`open_loop` schedules request i at t0 + i / rate whether or not earlier ones have answered, and
measures each latency from that scheduled time to the last byte of its response: a slow server
shows as queueing in the figures instead of slowing the client down (no coordinated omission).
It also records how late the generator itself was (`gen_late_*`: the moment a request's task
ran minus its scheduled time), so a reader can tell the client kept up; `send_late_*` adds the
wait for a connection and the connect itself, which belong to the server's side.

`saturate` is the closed loop: `concurrency` workers, each sending its next request as soon as the
previous one answered; its throughput is the server's capacity (with the client on the same cores).

Latencies (`Result.latencies_ms`) are those of the 2xx answers plus the timed-out requests, the
latter at the time waited (a lower bound), so that timeouts push the high percentiles up rather
than vanish from them. Everything else (non-2xx, refused or reset connections, malformed
answers) is counted in `Result.errors` by kind: "status_401", "timeout", "connect",
"connection", "protocol".

Connections are HTTP/1.1 keep-alive, reused from a pool of idle ones (newest first), opened when
none is idle up to `max_connections`; past that a request waits for one, and the wait counts in
its latency. Note that gunicorn's sync workers close every connection after one response
(`Connection: close`), so with them each request opens a connection; gthread workers
(`threads` > 1) keep them alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import ipaddress
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
# The hello WSGI module names the worker that answered /healthz in this header (see hello_wsgi.py).
WORKER_HEADER = "X-Bench-Worker"
# gunicorn makes its workers' heartbeat files there with mkstemp (its advice for containers).
SHM = Path("/dev/shm")  # noqa: S108

__all__ = ["Result", "gunicorn_serving", "open_loop", "open_loop_async", "saturate", "saturate_async"]


PER_CLIENT = 6  # connections a client keeps to one server at most, as browsers do

# --- Results ----------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of values already sorted; NaN when there are none."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


@dataclass
class Result:
    """What one run measured. Times in seconds, latencies in milliseconds."""

    mode: str  # "open" (fixed arrival rate) or "closed" (saturation)
    requests: int  # requests sent (or, for those that never got a connection, due)
    ok: int  # 2xx answers
    errors: dict[str, int]  # by kind: "status_NNN", "timeout", "connect", "connection", "protocol"
    duration: float  # from the first scheduled send to the last answer
    throughput: float  # 2xx answers per second over `duration`
    latencies_ms: list[float] = field(repr=False)  # 2xx answers, and timeouts at the time waited
    # Beside each latency: when its request was due (open loop) or sent (closed), seconds from the start.
    started_s: list[float] = field(default_factory=list, repr=False)
    rate: float | None = None  # open loop: the arrival rate asked for, requests per second
    concurrency: int | None = None  # closed loop: the number of workers
    # Open loop: when each request's task ran minus its scheduled time (the generator's own delay).
    gen_lateness_ms: list[float] = field(default_factory=list, repr=False)
    # When each request was written minus its scheduled time: the above plus waiting for a connection
    # (the pool full) and connecting. Closed loop: empty.
    send_lateness_ms: list[float] = field(default_factory=list, repr=False)
    connections_opened: int = 0
    bytes_received: int = 0  # response bodies
    client_cpu_s: float = 0.0  # CPU time this process spent during the run
    # CPU time the whole machine spent during the run (all cores, from /proc/stat; None elsewhere):
    # minus the client's and the server's, what else was running (another test suite...).
    machine_cpu_s: float | None = None
    _sorted: list[float] | None = field(default=None, init=False, repr=False, compare=False)

    def percentile(self, p: float) -> float:
        """The p-th percentile (0 < p <= 100, nearest rank) of `latencies_ms`."""
        if self._sorted is None or len(self._sorted) != len(self.latencies_ms):
            self._sorted = sorted(self.latencies_ms)
        return _percentile(self._sorted, p)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def timeline(self, bucket_s: float = 1.0) -> list[dict]:
        """Latencies by when their requests started, `bucket_s` seconds a row: shows a stall or a
        warm-up that the run's percentiles mix into one figure."""
        buckets: dict[int, list[float]] = {}
        for started, latency in zip(self.started_s, self.latencies_ms, strict=True):
            buckets.setdefault(int(started // bucket_s), []).append(latency)
        rows = []
        for index in sorted(buckets):
            values = sorted(buckets[index])
            rows.append(
                {
                    "from_s": round(index * bucket_s, 3),
                    "n": len(values),
                    "p50_ms": round(_percentile(values, 50), 2),
                    "p99_ms": round(_percentile(values, 99), 2),
                    "max_ms": round(values[-1], 2),
                }
            )
        return rows

    def summary(self) -> dict:
        """A flat dict, JSON-ready: counts, throughput, latency percentiles, the generator's lateness."""
        gen = sorted(self.gen_lateness_ms)
        send = sorted(self.send_lateness_ms)

        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 2)

        figures: dict = {"mode": self.mode}
        if self.rate is not None:
            figures["rate_rps"] = self.rate
        if self.concurrency is not None:
            figures["concurrency"] = self.concurrency
        figures |= {
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "error_rate": round(self.error_count / self.requests, 5) if self.requests else 0.0,
            "duration_s": round(self.duration, 3),
            "throughput_rps": round(self.throughput, 1),
            "mean_ms": ms(sum(self.latencies_ms) / len(self.latencies_ms)) if self.latencies_ms else None,
            "p50_ms": ms(self.percentile(50)),
            "p90_ms": ms(self.percentile(90)),
            "p99_ms": ms(self.percentile(99)),
            "p99_9_ms": ms(self.percentile(99.9)),
            "max_ms": ms(self.percentile(100)),
        }
        if self.mode == "open":
            figures |= {
                "gen_late_p99_ms": ms(_percentile(gen, 99)),
                "gen_late_max_ms": ms(_percentile(gen, 100)),
                "send_late_p99_ms": ms(_percentile(send, 99)),
                "send_late_max_ms": ms(_percentile(send, 100)),
            }
        figures |= {
            "connections_opened": self.connections_opened,
            "client_cpu_s": round(self.client_cpu_s, 3),
            "client_cpu_share": round(self.client_cpu_s / self.duration, 3) if self.duration else None,
            "machine_busy_cores": (
                round(self.machine_cpu_s / self.duration, 2)
                if self.machine_cpu_s is not None and self.duration
                else None
            ),
        }
        return figures


# --- HTTP/1.1 over an asyncio protocol --------------------------------------------------------------


class _ConnectError(OSError):
    """The connection could not be opened (refused, no port left...)."""


class _ProtocolError(ValueError):
    """The answer was not HTTP/1.1 as we read it."""


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resolve {host!r}: load goes to this machine's loopback only") from exc
    if not address.is_loopback:
        raise ValueError(f"{host!r} is {address}, not a loopback address: load goes to this machine only")


def _request_bytes(host: str, port: int, path: str, header_block: bytes) -> bytes:
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise ValueError(f"not a request path: {path!r}")
    return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (
        path.encode("ascii"),
        host.encode("ascii"),
        port,
        header_block,
    )


def _header_blocks(headers: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None) -> Callable[[int], bytes]:
    """The i-th request's header lines: the same for every request, or `headers(i)` (say, one
    user's token of many), each user's lines made once."""
    if not callable(headers):
        block = _header_block(headers)
        return lambda i: block
    made: dict[int, bytes] = {}

    def block_for(i: int) -> bytes:
        chosen = headers(i)
        key = id(chosen)
        if key not in made:
            made[key] = _header_block(chosen)
        return made[key]

    return block_for


def _header_block(headers: Mapping[str, str] | None) -> bytes:
    lines = []
    for name, value in (headers or {}).items():
        if name.lower() in {"host", "content-length", "transfer-encoding"}:
            raise ValueError(f"header {name} is set by the client itself")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class _ConnectionLost(ConnectionError):
    """The server closed the connection before the answer was complete."""

    def __init__(self, message: str, *, got_bytes: bool) -> None:
        super().__init__(message)
        self.got_bytes = got_bytes  # False: nothing of an answer came (a stale keep-alive connection)


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    """Status line and headers: (status, whether the server closes, Content-Length, chunked)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise _ProtocolError(f"bad status line {lines[0][:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise _ProtocolError(f"bad status line {lines[0][:80]!r}") from None
    close = parts[0] == b"HTTP/1.0"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise _ProtocolError(f"bad Content-Length {value[:40]!r}") from None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            tokens = value.lower()
            if b"close" in tokens:
                close = True
            elif b"keep-alive" in tokens:
                close = False
    return status, close, length, chunked


# What a connection is reading: nothing asked, the head, a body of known length, chunks, to the end.
_IDLE, _HEAD, _LENGTH, _CHUNKED, _TO_EOF = range(5)
_MAX_HEAD = 1 << 16


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time, its answer parsed as it arrives (a
    protocol, not streams: cheaper per request, which counts when client and server share 2 cores)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.served = 0
        self.lost = False
        self._waiter: asyncio.Future[tuple[int, bool, int]] | None = None
        self._buffer = bytearray()
        self._state = _IDLE
        self._got_bytes = False
        self._status = 0
        self._close = False
        self._remaining = 0
        self._received = 0

    # Asked by the pool and by _fetch.

    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bool, int]]:
        """Sends one request; the future gets (status, whether the server closes, body length)."""
        assert self.transport is not None and self._state == _IDLE  # noqa: S101 - one request at a time
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._state = _HEAD
        self._got_bytes = False
        self._received = 0
        self._buffer.clear()
        self.transport.write(data)
        return waiter

    # Called by the event loop.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._state == _IDLE:
            self.close()  # bytes nobody asked for: this connection cannot be trusted any more
            return
        self._got_bytes = True
        if self._state == _LENGTH:
            if len(data) < self._remaining:
                self._remaining -= len(data)
                self._received += len(data)
            else:
                self._received += self._remaining
                self._finish()
            return
        if self._state == _TO_EOF:
            self._received += len(data)
            return
        self._buffer += data
        try:
            self._advance()
        except _ProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._state == _TO_EOF:
            self._close = True
            self._finish()
        elif self._state != _IDLE:
            reason = f" ({exc})" if exc else ""
            self._fail(_ConnectionLost(f"connection closed before the answer ended{reason}", got_bytes=self._got_bytes))

    # Parsing.

    def _advance(self) -> None:
        buffer = self._buffer
        while True:
            if self._state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > _MAX_HEAD:
                        raise _ProtocolError("answer head over 64 KiB")
                    return
                status, close, length, chunked = _parse_head(bytes(buffer[:end]))
                del buffer[: end + 4]
                if 100 <= status < 200 and status != 101:
                    continue  # an interim answer (100 Continue): the real one follows
                self._status, self._close = status, close
                if status in (204, 304) or length == 0:
                    self._finish()
                    return
                if chunked:
                    self._state = _CHUNKED
                    continue
                if length is not None:
                    if len(buffer) >= length:
                        self._received = length
                        self._finish()
                    else:
                        self._state, self._remaining, self._received = _LENGTH, length - len(buffer), len(buffer)
                        buffer.clear()
                    return
                self._state, self._received = _TO_EOF, len(buffer)  # the body runs to the end of the connection
                buffer.clear()
                return
            if self._state == _CHUNKED:
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    return
                try:
                    size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
                except ValueError:
                    raise _ProtocolError(f"bad chunk size {bytes(buffer[:40])!r}") from None
                if size == 0:
                    rest = line_end + 2
                    if buffer[rest : rest + 2] == b"\r\n":
                        self._finish()
                    elif buffer.find(b"\r\n\r\n", rest) >= 0:
                        self._finish()  # after trailers
                    return
                if len(buffer) < line_end + 2 + size + 2:
                    return
                del buffer[: line_end + 2 + size + 2]
                self._received += size
                continue
            return

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        self._buffer.clear()
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._close, self._received))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class _Pool:
    """Keep-alive connections to one server: idle ones reused, up to `limit` open, then a queue."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self.open = 0  # connections open or being opened, each holding a slot
        self.opened = 0  # connections opened in all
        self.idle: deque[_Connection] = deque()
        # Each waiter gets a connection, or None: a slot handed over, to open a connection with.
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def acquire(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                return conn
            conn.close()
            self.open -= 1
        if self.open < self.limit:
            self.open += 1
            return await self._connect()
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed over just as we gave up: pass it on
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed, reuse=True)
            raise
        if conn is None:
            return await self._connect()
        return conn

    async def _connect(self) -> _Connection:
        """Opens a connection in a slot already counted; the slot is freed if that fails."""
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            self._free_slot()
            raise _ConnectError(exc.errno, f"connect: {exc}") from exc
        except BaseException:
            self._free_slot()
            raise
        self.opened += 1
        return conn

    def release(self, conn: _Connection, *, reuse: bool) -> None:
        if reuse and conn.usable():
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self.idle.append(conn)
        else:
            conn.close()
            self._free_slot()

    def _free_slot(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.open -= 1

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class _Clients:
    """The pools of `clients` clients, each with its own keep-alive connections (at most `limit`, as
    a browser keeps six per server): request i comes from client i % clients. One shared pool when
    `clients` is None. Many clients spread their connections, and so the load, over a server's
    processes as real users do; a few busy connections can all land on one process."""

    def __init__(self, host: str, port: int, clients: int | None, limit: int) -> None:
        self.pools = [_Pool(host, port, limit) for _ in range(clients or 1)]

    def __call__(self, i: int) -> _Pool:
        return self.pools[i % len(self.pools)]

    @property
    def opened(self) -> int:
        return sum(pool.opened for pool in self.pools)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


async def _fetch(pool: _Pool, request: bytes, on_send: Callable[[], None] | None = None) -> tuple[int, int]:
    """One request on a pooled connection: (status, body length). Tried once more on a fresh
    connection when a reused one turns out to have been closed by the server before answering."""
    for attempt in range(2):
        conn = await pool.acquire()
        if on_send is not None and attempt == 0:
            on_send()
        try:
            status, close, received = await conn.request(request)
        except _ConnectionLost as exc:
            pool.release(conn, reuse=False)
            if conn.served and not exc.got_bytes and attempt == 0:
                continue  # a stale keep-alive connection: the request never reached the application
            raise
        except BaseException:
            pool.release(conn, reuse=False)
            raise
        conn.served += 1
        pool.release(conn, reuse=not close)
        return status, received
    raise AssertionError("unreachable")


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, _ConnectError):
        return "connect"
    if isinstance(exc, ConnectionError):
        return "connection"
    if isinstance(exc, (_ProtocolError, ValueError)):
        return "protocol"
    if isinstance(exc, OSError):
        return "connection"
    return type(exc).__name__


class _Recorder:
    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self.started_s: list[float] = []
        self.gen_lateness_ms: list[float] = []
        self.send_lateness_ms: list[float] = []
        self.bytes_received = 0

    def answered(self, status: int, received: int, started_s: float, latency_s: float) -> None:
        self.bytes_received += received
        if 200 <= status < 300:
            self.ok += 1
            self.latencies_ms.append(latency_s * 1000)
            self.started_s.append(started_s)
        else:
            self.errors[f"status_{status}"] += 1

    def failed(self, exc: BaseException, started_s: float, waited_s: float) -> None:
        kind = _error_kind(exc)
        self.errors[kind] += 1
        if kind == "timeout":
            self.latencies_ms.append(waited_s * 1000)
            self.started_s.append(started_s)

    def result(
        self, *, mode: str, duration: float, pool: _Pool | _Clients, cpu0: float, machine0: float | None, **extra: Any
    ) -> Result:
        """What was recorded, as the Result of a run of `duration` seconds (open or closed loop)."""
        return Result(
            mode=mode,
            requests=self.requests,
            ok=self.ok,
            errors=dict(self.errors),
            duration=duration,
            throughput=self.ok / duration,
            latencies_ms=self.latencies_ms,
            started_s=self.started_s,
            connections_opened=pool.opened,
            bytes_received=self.bytes_received,
            client_cpu_s=time.process_time() - cpu0,
            machine_cpu_s=_machine_busy_since(machine0),
            **extra,
        )


def _machine_cpu_s() -> float | None:
    """Busy CPU seconds of all cores since boot (Linux), idle and I/O wait left out."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:7]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # user..softirq


def _machine_busy_since(start: float | None) -> float | None:
    now = _machine_cpu_s()
    return None if start is None or now is None else now - start


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """No garbage collector pauses in the middle of a run (it is bounded: the garbage waits)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


# --- Open loop ------------------------------------------------------------------------------------


async def open_loop_async(
    *,
    host: str,
    port: int,
    paths: Callable[[int], str],
    rate: float,
    duration: float,
    headers: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None,
    max_connections: int = 256,
    timeout: float = 5.0,
    warmup: float = 0.0,
    clients: int | None = None,
) -> Result:
    """`open_loop` inside a running event loop."""
    _check_loopback(host)
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    if warmup > 0:
        await open_loop_async(
            host=host,
            port=port,
            paths=paths,
            rate=rate,
            duration=warmup,
            headers=headers,
            max_connections=max_connections,
            timeout=timeout,
            clients=clients,
        )
    loop = asyncio.get_running_loop()
    header_block = _header_blocks(headers)
    pools = _Clients(host, port, clients, PER_CLIENT if clients else max_connections)
    rec = _Recorder()
    total = max(1, round(rate * duration))
    interval = 1.0 / rate

    async def one(i: int, scheduled: float) -> None:
        rec.gen_lateness_ms.append((loop.time() - scheduled) * 1000)
        request = _request_bytes(host, port, paths(i), header_block(i))

        def sent() -> None:
            rec.send_lateness_ms.append((loop.time() - scheduled) * 1000)

        try:
            async with asyncio.timeout_at(scheduled + timeout):
                status, received = await _fetch(pools(i), request, sent)
        except Exception as exc:  # noqa: BLE001 - every failure is a figure
            rec.failed(exc, scheduled - t0, loop.time() - scheduled)
            return
        rec.answered(status, received, scheduled - t0, loop.time() - scheduled)

    pending: set[asyncio.Task] = set()
    cpu0, machine0 = time.process_time(), _machine_cpu_s()
    with _quiet_gc():
        t0 = loop.time() + 0.01
        i = 0
        try:
            while i < total:
                now = loop.time()
                while i < total and t0 + i * interval <= now:
                    task = loop.create_task(one(i, t0 + i * interval))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    i += 1
                if i < total:
                    await asyncio.sleep(t0 + i * interval - loop.time())
            rec.requests = total
            while pending:
                await asyncio.gather(*list(pending))
            end = loop.time()
        finally:
            for task in list(pending):
                task.cancel()
            pools.close()
    return rec.result(
        mode="open",
        duration=end - t0,
        pool=pools,
        cpu0=cpu0,
        machine0=machine0,
        rate=rate,
        gen_lateness_ms=rec.gen_lateness_ms,
        send_lateness_ms=rec.send_lateness_ms,
    )


def open_loop(
    *,
    host: str,
    port: int,
    paths: Callable[[int], str],
    rate: float,
    duration: float,
    headers: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None,
    max_connections: int = 256,
    timeout: float = 5.0,
    warmup: float = 0.0,
    clients: int | None = None,
) -> Result:
    """GETs at a constant arrival rate: request i (path `paths(i)`) is due at t0 + i / rate, sent
    then whether or not the earlier ones have answered, its latency measured from that due time.

    `rate` requests per second for `duration` seconds (round(rate * duration) requests), each given
    `timeout` seconds from its due time (waiting for a connection included). `warmup` seconds at the
    same rate first, not counted. `headers` are sent with every request (Host is the client's).
    `clients`: request i comes from client i % clients, each with its own connections (see
    `_Clients`); None: one pool of at most `max_connections` for all.
    """
    return asyncio.run(
        open_loop_async(
            host=host,
            port=port,
            paths=paths,
            rate=rate,
            duration=duration,
            headers=headers,
            max_connections=max_connections,
            timeout=timeout,
            warmup=warmup,
            clients=clients,
        )
    )


# --- Closed loop ----------------------------------------------------------------------------------


async def saturate_async(
    *,
    host: str,
    port: int,
    paths: Callable[[int], str],
    concurrency: int,
    duration: float,
    headers: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None,
    timeout: float = 5.0,
    warmup: float = 0.0,
    clients: int | None = None,
) -> Result:
    """`saturate` inside a running event loop."""
    _check_loopback(host)
    if concurrency < 1 or duration <= 0:
        raise ValueError("concurrency and duration must be positive")
    if warmup > 0:
        await saturate_async(
            host=host,
            port=port,
            paths=paths,
            concurrency=concurrency,
            duration=warmup,
            headers=headers,
            timeout=timeout,
            clients=clients,
        )
    loop = asyncio.get_running_loop()
    header_block = _header_blocks(headers)
    pools = _Clients(host, port, clients, PER_CLIENT if clients else concurrency)
    rec = _Recorder()
    counter = 0

    async def worker(stop_at: float) -> None:
        nonlocal counter
        while loop.time() < stop_at:
            i = counter
            counter += 1
            rec.requests += 1
            request = _request_bytes(host, port, paths(i), header_block(i))
            start = loop.time()
            try:
                async with asyncio.timeout(timeout):
                    status, received = await _fetch(pools(i), request)
            except Exception as exc:  # noqa: BLE001 - every failure is a figure
                rec.failed(exc, start - t0, loop.time() - start)
                if _error_kind(exc) == "connect":
                    await asyncio.sleep(0.01)  # no busy loop against a server that refuses
                continue
            rec.answered(status, received, start - t0, loop.time() - start)

    cpu0, machine0 = time.process_time(), _machine_cpu_s()
    with _quiet_gc():
        t0 = loop.time()
        try:
            await asyncio.gather(*(worker(t0 + duration) for _ in range(concurrency)))
        finally:
            pools.close()
        end = loop.time()
    return rec.result(
        mode="closed", duration=end - t0, pool=pools, cpu0=cpu0, machine0=machine0, concurrency=concurrency
    )


def saturate(
    *,
    host: str,
    port: int,
    paths: Callable[[int], str],
    concurrency: int,
    duration: float,
    headers: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None,
    timeout: float = 5.0,
    warmup: float = 0.0,
    clients: int | None = None,
) -> Result:
    """Closed loop: `concurrency` workers, each sending its next GET as soon as its previous one
    answered, for `duration` seconds (those in flight then finish). `Result.throughput` is 2xx
    answers per second; latencies run from send to answer. `warmup` seconds first, not counted.
    `clients`: request i comes from client i % clients over its own connections (`_Clients`).
    """
    return asyncio.run(
        saturate_async(
            host=host,
            port=port,
            paths=paths,
            concurrency=concurrency,
            duration=duration,
            headers=headers,
            timeout=timeout,
            warmup=warmup,
            clients=clients,
        )
    )


# --- gunicorn -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _probe(port: int, path: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader(WORKER_HEADER)
    finally:
        conn.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def gunicorn_serving(
    *,
    wsgi_app: str,
    env: Mapping[str, str],
    workers: int,
    port: int | None = None,
    threads: int = 1,
    extra_args: Sequence[str] = (),
    ready_path: str = "/healthz",
    startup_timeout: float = 60.0,
    log_path: str | Path | None = None,
) -> Iterator[tuple[str, int]]:
    """Runs `.venv/bin/gunicorn wsgi_app` in /work/main on 127.0.0.1 and yields (host, port).

    `env` is added to this process's environment. `workers` processes, `threads` threads each
    (1: the sync worker class; more: gthread, which keeps connections alive). No access log.
    Ready when GET `ready_path` answered 200 and, where the app names its worker in the
    X-Bench-Worker header (hello_wsgi does), when every worker has answered once, so no worker
    is still importing Django during the measurement. gunicorn's own log (warnings and errors,
    application tracebacks) goes to `log_path` (a temporary file when not given) and its tail is
    shown when gunicorn fails to start. Stopped with SIGTERM, then SIGKILL after 15 s.
    """
    port = port or _free_port()
    if log_path is None:
        descriptor, log_path = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
        os.close(descriptor)
    log = Path(log_path)
    child_env = {**os.environ, **env}
    child_env.pop("GUNICORN_CMD_ARGS", None)  # nothing from outside, such as an access log
    command = [
        str(GUNICORN),
        wsgi_app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        # No --access-logfile: its default (None) writes no access log at all.
        "--log-level",
        "warning",
        "--graceful-timeout",
        "10",
    ]
    if SHM.is_dir():
        command += ["--worker-tmp-dir", str(SHM)]  # the workers' heartbeat files off the disk
    command += list(extra_args)
    with log.open("ab") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own gunicorn, arguments built here
            command,
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ready = False
    try:
        _wait_ready(process, port, ready_path, workers, startup_timeout, log)
        ready = True
        yield "127.0.0.1", port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        elif ready:
            print(f"gunicorn had stopped by itself (exit {process.returncode}):\n{_tail(log)}", file=sys.stderr)


def _wait_ready(process: subprocess.Popen, port: int, path: str, workers: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode} while starting:\n{_tail(log)}")
        try:
            status, worker = _probe(port, path)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
            continue
        last = f"{path} answered {status}"
        if status == 200:
            if worker is None:
                return  # the app does not say which worker answered: one ready is all we can tell
            seen.add(worker)
            if len(seen) >= workers:
                return
            time.sleep(0.02)
        else:
            time.sleep(0.1)
    process.terminate()
    process.wait(timeout=15)
    raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s ({last}):\n{_tail(log)}")
