"""HTTP: the runtime server against a raw loopback floor, both driven by the same closed-loop clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warmpool_lab.runtime_bench.guests import (
    HOST,
    IN_PLACE,
    READY_TIMEOUT_S,
    RECYCLED,
    SERVED,
    TENANT,
    THROUGHPUT_CONNECTIONS,
    Module,
    raw_config,
)
from warmpool_lab.runtime_bench.report import Line, median, percentile, verdict
from warmpool_lab.runtime_bench.support import cores, no_gc, run_loop, wait_until

FLOOR_BODY = b'{"results":[3]}'
FLOOR_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(FLOOR_BODY), FLOOR_BODY)
INVOKE_BODY = b'{"args":[1,2]}'


# 5. HTTP: the runtime server vs a raw loopback floor, driven by the same client -------------------
class FloorProtocol(asyncio.Protocol):
    """The least an HTTP server can do: a fixed 200 per request (requests arrive whole, one at a time)."""

    def __init__(self) -> None:
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._transport.write(FLOOR_RESPONSE * data.count(b"\r\n\r\n"))


async def _floor_main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, HOST, port, reuse_address=True, backlog=1024)
    async with server:
        await server.serve_forever()


FLOOR_MAIN = "import sys; from warmpool_lab.runtime_bench.http_load import serve_floor; serve_floor(int(sys.argv[1]))"
"""The floor subprocess's program."""


def serve_floor(port: int) -> None:
    """Entry point of the floor subprocess."""
    import uvloop

    uvloop.run(_floor_main(port))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server subprocess pinned to one core; its stderr goes to a file read only if it fails."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def spawn(name: str, argv: list[str], port: int, core: int | None, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    if core is not None:
        # Threads the server starts later (epoch ticker, refill, workers) inherit this mask.
        os.sched_setaffinity(proc.pid, {core})
    return Server(name, port, proc, log)


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=2.0)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return int(resp.status), resp.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def wait_serving(server: Server, path: str) -> None:
    def up() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} server exited with {server.proc.returncode}: {server.tail()}")
        return http_get(server.port, path)[0] == 200

    wait_until(up, READY_TIMEOUT_S, f"the {server.name} server on port {server.port}")


def draws(port: int) -> dict[tuple[str, str], float]:
    """The runtime's draw counters by (module label, result), from its /metrics."""
    out: dict[tuple[str, str], float] = {}
    for line in http_get(port, "/metrics")[1].decode().splitlines():
        if line.startswith("tensor_wasm_pool_draws_total{"):
            module = line.split('module="', 1)[1].split('"', 1)[0]
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[(module, result)] = out.get((module, result), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def invoke_request(path: str) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), HOST.encode(), len(INVOKE_BODY), INVOKE_BODY))


def response_end(buf: bytes | bytearray) -> int:
    """Length of the first complete response in `buf`, or 0 while it is incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    head = bytes(buf[:head_end]).lower()
    at = head.find(b"content-length:")
    length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
    end = head_end + 4 + length
    return end if len(buf) >= end else 0


def latency_run(port: int, request: bytes, seconds: float) -> list[float]:
    """Closed loop on one keep-alive connection: every request's round-trip time, in µs."""
    samples: list[float] = []
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clock, send, recv = time.perf_counter_ns, sock.sendall, sock.recv
        deadline = clock() + int(seconds * 1e9)
        with no_gc():
            while True:
                start = clock()
                send(request)
                buf = recv(65536)
                while not response_end(buf):
                    buf += recv(65536)
                now = clock()
                samples.append((now - start) / 1000)
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {buf[:300]!r}")
                if now >= deadline:
                    return samples


@dataclass(slots=True)
class LoadState:
    running: bool = True
    done: int = 0
    errors: int = 0
    open: int = 0


class LoadProtocol(asyncio.Protocol):
    """One closed-loop keep-alive connection of the throughput client."""

    def __init__(self, request: bytes, state: LoadState) -> None:
        self._request = request
        self._state = state
        self._buf = bytearray()
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._state.open += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while end := response_end(self._buf):
            if not self._buf.startswith(b"HTTP/1.1 200"):
                self._state.errors += 1
            del self._buf[:end]
            self._state.done += 1
            if self._state.running:
                self._transport.write(self._request)
            else:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.open -= 1


async def _throughput(port: int, request: bytes, connections: int, seconds: float) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    state = LoadState()
    for _ in range(connections):
        await loop.create_connection(lambda: LoadProtocol(request, state), HOST, port)
    await asyncio.sleep(min(0.5, seconds / 4))  # warm up
    done, start = state.done, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (state.done - done) / (time.perf_counter() - start)
    state.running = False
    deadline = time.monotonic() + 5.0
    while state.open > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return rate, state.errors


def throughput_run(port: int, request: bytes, connections: int, seconds: float) -> tuple[float, int]:
    """Requests per second over `connections` closed-loop keep-alive connections, and error responses."""
    return run_loop(lambda: _throughput(port, request, connections, seconds))


@dataclass(slots=True)
class HttpFigures:
    """Per-round figures of one server; rounds alternate between the floor and the runtime."""

    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    errors: int = 0


def latency_round(port: int, request: bytes, seconds: float, into: HttpFigures) -> None:
    samples = sorted(latency_run(port, request, seconds))
    into.p50.append(percentile(samples, 0.50))
    into.p99.append(percentile(samples, 0.99))


def throughput_round(port: int, request: bytes, seconds: float, into: HttpFigures) -> None:
    rate, errors = throughput_run(port, request, THROUGHPUT_CONNECTIONS, seconds)
    into.rate.append(rate)
    into.errors += errors


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[None]:
    """Run the load generator (this process) on the client core for the duration."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def servers(modules: dict[str, Module], workdir: Path, core: int | None) -> Iterator[tuple[Server, Server]]:
    """The runtime server (serving both reset strategies) and the floor server, both on `core`."""
    config_path = workdir / "runtime.json"
    served = {name: modules[name] for name in SERVED}
    config_path.write_text(json.dumps(raw_config(served, THROUGHPUT_CONNECTIONS * 2)))
    port = free_port()
    runtime = spawn("runtime", [sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config",
                                str(config_path), "--host", HOST, "--port", str(port), "--log-level", "WARNING"],
                    port, core, workdir)
    try:
        port = free_port()
        floor = spawn("floor", [sys.executable, "-c", FLOOR_MAIN, str(port)], port, core, workdir)
        try:
            wait_serving(runtime, "/readyz")
            wait_serving(floor, "/")
            yield runtime, floor
        finally:
            stop(floor)
    finally:
        stop(runtime)


def http_lines(modules: dict[str, Module], workdir: Path, repeats: int, seconds: float) -> list[Line]:
    """Floor and runtime runs interleaved round by round, so all of them see the same background load."""
    server_core, client_core = cores()
    floor = HttpFigures()
    served = {name: HttpFigures() for name in SERVED}
    with servers(modules, workdir, server_core) as (runtime, floor_server), pinned(client_core):
        requests = {name: invoke_request(f"/v1/{TENANT}/{modules[name].sha256}/add") for name in SERVED}
        before = draws(runtime.port)
        for _ in range(repeats):
            latency_round(floor_server.port, requests[IN_PLACE], seconds, floor)
            for name in SERVED:
                latency_round(runtime.port, requests[name], seconds, served[name])
            throughput_round(floor_server.port, requests[IN_PLACE], seconds, floor)
            for name in SERVED:
                throughput_round(runtime.port, requests[name], seconds, served[name])
        after = draws(runtime.port)
    errors = {name: figures.errors for name, figures in served.items() if figures.errors}
    if floor.errors or errors:
        raise RuntimeError(f"error responses under load: floor {floor.errors}, runtime {errors}")
    drawn = {key: after[key] - before.get(key, 0.0) for key in after}
    return http_report(floor, served, modules, drawn)


def http_report(floor: HttpFigures, served: dict[str, HttpFigures], modules: dict[str, Module],
                drawn: dict[tuple[str, str], float]) -> list[Line]:
    f50, f99, f_rate = median(floor.p50), median(floor.p99), median(floor.rate)
    lines = [Line(
        "HTTP modules: add(i32,i32) bumping a hidden call counter", "info",
        f"as is -> {modules[IN_PLACE].strategy}; also writing its table -> {modules[RECYCLED].strategy}",
        verdict(None),
    ), Line(
        "HTTP floor (raw uvloop protocol)", "baseline",
        f"c=1 p50 {f50:.0f} µs, p99 {f99:.0f} µs; c={THROUGHPUT_CONNECTIONS} {f_rate:,.0f}/s", verdict(None),
        {"floor_p50_us": f50, "floor_p99_us": f99, "floor_per_s": f_rate},
    )]
    draw_parts = []
    for name, warm in served.items():
        strategy = "in place" if modules[name].strategy == "in place" else "recycle"
        w50, w99, w_rate = median(warm.p50), median(warm.p99), median(warm.rate)
        r50 = median([w / f for w, f in zip(warm.p50, floor.p50, strict=True)])
        r99 = median([w / f for w, f in zip(warm.p99, floor.p99, strict=True)])
        r_rate = median([w / f for w, f in zip(warm.rate, floor.rate, strict=True)])
        lines += [
            Line(f"HTTP invoke c=1, reset {strategy}: p50 / floor", "<= 2x",
                 f"p50 {w50:.0f} µs = {r50:.2f}x; p99 {w99:.0f} µs = {r99:.2f}x", verdict(r50 <= 2.0),
                 {f"{name}_p50_us": w50, f"{name}_p99_us": w99, f"{name}_p50_ratio": r50,
                  f"{name}_p99_ratio": r99}),
            Line(f"HTTP throughput c={THROUGHPUT_CONNECTIONS}, one core, reset {strategy}", ">= 5000/s",
                 f"{w_rate:,.0f}/s ({r_rate:.2f}x floor)", verdict(w_rate >= 5000.0),
                 {f"{name}_per_s": w_rate, f"{name}_rate_over_floor": r_rate}),
        ]
        label = modules[name].sha256[:12]
        hits, misses = drawn.get((label, "hit"), 0.0), drawn.get((label, "miss"), 0.0)
        draw_parts.append(f"{strategy} {hits:,.0f} hits / {misses:,.0f} misses")
    lines.append(Line("HTTP pool draws during the runs", "info", "; ".join(draw_parts), verdict(None),
                      {f"{name}_draws_{result}": drawn.get((modules[name].sha256[:12], result), 0.0)
                       for name in SERVED for result in ("hit", "miss")}))
    return lines


