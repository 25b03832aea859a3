"""`warmpool bench runtime`: pool, reset, call-path and HTTP costs, each against a baseline from the same run."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import http.client
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from warmpool_runtime.config import parse_config
from warmpool_runtime.instance import Template, WarmInstance
from warmpool_runtime.modules import sha256_hex
from warmpool_runtime.pool import Refiller, TuplePool
from warmpool_runtime.service import Runtime

TENANT = "bench"
HOST = "127.0.0.1"
OS_PAGE = 4096
WASM_PAGE = 65536
MIB = 1 << 20

ADD_WAT = """(module
  (memory (export "memory") 1)
  (data (i32.const 0) "warmpool")
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"""

# `touch(len)` writes one word per OS page of [0, len): dirties exactly `len` bytes of memory.
DIRTY_WAT = """(module
  (memory (export "memory") {pages})
  (data (i32.const 0) "warmpool")
  (func (export "touch") (param $len i32) (result i32) (local $p i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $len)))
      (i64.store (local.get $p) (i64.const -1))
      (local.set $p (i32.add (local.get $p) (i32.const {stride})))
      (br $next)))
    (local.get $p)))"""

FLOOR_BODY = b'{"results":[3]}'
FLOOR_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(FLOOR_BODY), FLOOR_BODY)
INVOKE_BODY = b'{"args":[1,2]}'
THROUGHPUT_CONNECTIONS = 16
READY_TIMEOUT_S = 30.0


# Results ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """One row of the report: what was measured, the goal, the figure and the verdict."""

    name: str
    goal: str
    measured: str
    verdict: str
    figures: dict[str, float] = field(default_factory=dict)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "INFO"
    return "PASS" if ok else "SHORT"


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Keep the cyclic collector out of a timed section."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Fixtures --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: str
    sha256: str


def write_modules(directory: Path) -> dict[str, Module]:
    """The bench's guests, compiled from WAT and written as binary Wasm."""
    texts = {
        "add": ADD_WAT,
        "dirty-64k": DIRTY_WAT.format(pages=1, stride=OS_PAGE),
        "dirty-1m": DIRTY_WAT.format(pages=MIB // WASM_PAGE, stride=OS_PAGE),
    }
    out = {}
    for name, text in texts.items():
        data = bytes(wasmtime.wat2wasm(text))
        path = directory / f"{name}.wasm"
        path.write_bytes(data)
        out[name] = Module(name, str(path), sha256_hex(data))
    return out


def raw_config(modules: dict[str, Module], warm: int) -> dict[str, Any]:
    """The runtime config document (as the operator would render it) serving every bench module."""
    return {
        "maxTotalWarm": warm * len(modules),
        "tuples": [
            {"tenant": TENANT, "module": {"sha256": m.sha256, "source": {"path": m.path}},
             "warmInstancesPerTuple": warm}
            for m in modules.values()
        ],
    }


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.001)


def side_pool(template: Template, floor: int, backlog: int = 0) -> TuplePool:
    """A pool whose refiller never runs: what acquire/release cost on the caller, refill excluded.

    Each acquire and each release queue one item; a backlog of `backlog` items never saturates,
    while a backlog of 0 makes every release drop the used Store on the caller's thread.
    """
    return TuplePool(template, floor, Refiller())


# 1. Cold instantiate vs warm acquire + release ---------------------------------------------------
def cold_instantiate_us(template: Template, n: int) -> float:
    """Median of `n` cold instantiations (new Store + InstancePre.instantiate); each dropped untimed."""
    pool = side_pool(template, 0)
    samples = []
    with no_gc():
        for _ in range(n):
            start = time.perf_counter_ns()
            instance = pool.instantiate()
            samples.append(time.perf_counter_ns() - start)
            del instance
    return median([s / 1000 for s in samples])


def acquire_release_us(template: Template, n: int, saturated: bool = False) -> float:
    """Mean cost of one hit plus its release over `n` prewarmed instances (refill thread not running)."""
    pool = side_pool(template, n, 0 if saturated else 2 * n + 2)
    pool.prewarm(n)
    acquire, release = pool.acquire, pool.release
    with no_gc():
        start = time.perf_counter_ns()
        for _ in range(n):
            instance = acquire()
            if instance is not None:
                release(instance)
        elapsed = time.perf_counter_ns() - start
    misses = pool.stats.misses
    del pool, instance
    gc.collect()  # the dropped refiller's queue holds the released instances (and their pool slots)
    if misses:
        raise RuntimeError(f"{misses} of {n} draws missed in a prewarmed pool")
    return elapsed / n / 1000


def paired(repeats: int, measure: Callable[[], float], baseline: Callable[[], float]) -> tuple[float, float, float]:
    """(median measure, median baseline, median of per-repeat baseline/measure): both see the same load."""
    pairs = [(measure(), baseline()) for _ in range(repeats)]
    return median([m for m, _ in pairs]), median([b for _, b in pairs]), median([b / m for m, b in pairs])


def measure_pool(template: Template, repeats: int) -> list[Line]:
    warm, cold, ratio = paired(repeats, lambda: acquire_release_us(template, 400),
                               lambda: cold_instantiate_us(template, 200))
    full = median([acquire_release_us(template, 100, saturated=True) for _ in range(repeats)])
    return [
        Line("cold instantiate (new Store + InstancePre)", "baseline", f"{cold:.1f} µs", verdict(None),
             {"cold_instantiate_us": cold}),
        Line("warm acquire + release (refill excluded)", "<= 2 µs", f"{warm:.2f} µs, {ratio:.0f}x below cold",
             verdict(warm <= 2.0), {"acquire_release_us": warm, "cold_over_warm": ratio}),
        Line("acquire + release, retire backlog full", "info", f"{full:.1f} µs (Store dropped on the caller)",
             verdict(None), {"acquire_release_backlog_full_us": full}),
    ]


# 2. Reset: recycle vs in-place snapshot copy; and where the reset runs ----------------------------
def recycle_us(template: Template, dirty_bytes: int, n: int) -> float:
    """Median cost of dropping a used instance's Store and stamping a fresh one from InstancePre.

    The guest first dirties `dirty_bytes` of its memory through a `touch` export (0: no call).
    """
    pool = side_pool(template, 0)
    ticks = template.deadline_ticks
    samples = []
    held = [pool.instantiate()]
    with no_gc():
        for _ in range(n):
            if dirty_bytes:
                held[0].call_numeric("touch", (dirty_bytes,), ticks)
            start = time.perf_counter_ns()
            held.pop()  # the last reference: the used Store is dropped here
            held.append(pool.instantiate())
            samples.append(time.perf_counter_ns() - start)
    return median([s / 1000 for s in samples])


def memmove_us(template: Template, dirty_bytes: int, n: int) -> float:
    """Median cost of copying a post-start snapshot of the whole linear memory back in place."""
    store = wasmtime.Store(template.engine)
    store.set_epoch_deadline(1 << 40)
    exports = template.pre.instantiate(store).exports(store)
    memory, touch = exports["memory"], exports["touch"]
    if not isinstance(memory, wasmtime.Memory) or not isinstance(touch, wasmtime.Func):
        raise RuntimeError("the dirtying module lacks its memory or touch export")
    size = memory.data_len(store)
    base = ctypes.addressof(memory.data_ptr(store).contents)
    snapshot = ctypes.create_string_buffer(ctypes.string_at(base, size), size)
    samples = []
    with no_gc():
        for _ in range(n):
            touch(store, dirty_bytes)
            start = time.perf_counter_ns()
            ctypes.memmove(base, snapshot, size)
            samples.append(time.perf_counter_ns() - start)
    if ctypes.string_at(base, size) != snapshot.raw:
        raise RuntimeError("in-place reset did not restore the memory")
    return median([s / 1000 for s in samples])


def reset_line(template: Template, name: str, dirty: int, repeats: int) -> Line:
    recycle, copy, _ = paired(repeats, lambda: recycle_us(template, dirty, 100),
                              lambda: memmove_us(template, dirty, 100))
    size = "1 page (64 KiB)" if dirty == WASM_PAGE else "1 MiB"
    cheaper = "recycle" if recycle <= copy else "memmove"
    return Line(
        f"reset, {size} dirtied: recycle vs memmove", "info (cheaper wins)",
        f"{recycle:.1f} µs vs {copy:.1f} µs -> {cheaper}", verdict(None),
        {f"recycle_{name}_us": recycle, f"memmove_{name}_us": copy},
    )


def measure_reset(runtime: Runtime, modules: dict[str, Module], repeats: int) -> list[Line]:
    """Each module's memory is exactly what its guest dirties: 64 KiB and 1 MiB."""
    return [reset_line(runtime.pools[(TENANT, modules[name].sha256)].template, name, dirty, repeats)
            for name, dirty in (("dirty-64k", WASM_PAGE), ("dirty-1m", MIB))]


def request_path_us(pool: TuplePool, inline_reset: bool, n: int) -> list[float]:
    """Per-call times of acquire -> call -> release (or -> drop + re-instantiate inline), hits only."""
    ticks = pool.template.deadline_ticks
    samples: list[float] = []
    burst = 8  # 16 queued items: below the retire backlog, so every release is handed off
    while len(samples) < n:
        wait_until(lambda: pool.warm >= pool.floor, 10.0, "the refill thread")
        with no_gc():
            for _ in range(burst):
                start = time.perf_counter_ns()
                instance = pool.acquire()
                if instance is None:
                    raise RuntimeError("draw missed during the request-path measurement")
                instance.call_numeric("add", (1, 2), ticks)
                if inline_reset:
                    del instance
                    instance = pool.instantiate()
                else:
                    pool.release(instance)
                samples.append((time.perf_counter_ns() - start) / 1000)
                del instance
    return samples


def measure_request_path(runtime: Runtime, modules: dict[str, Module], repeats: int) -> list[Line]:
    """The caller's acquire -> call -> release must cost less than the reset alone, or the reset is on it."""
    pool = runtime.pools[(TENANT, modules["add"].sha256)]
    offloaded = median([median(request_path_us(pool, False, 200)) for _ in range(repeats)])
    inline = median([median(request_path_us(pool, True, 200)) for _ in range(repeats)])
    reset = median([recycle_us(pool.template, 0, 100) for _ in range(repeats)])
    return [Line(
        "request path (acquire->call->release), refill running", "< reset alone",
        f"{offloaded:.1f} µs; reset alone {reset:.1f} µs; with inline reset {inline:.1f} µs",
        verdict(offloaded < reset),
        {"request_path_us": offloaded, "reset_add_us": reset, "request_path_inline_reset_us": inline},
    )]


# 3. Fast call path vs Func.__call__ --------------------------------------------------------------
def fast_call_us(template: Template, n: int) -> float:
    instance = WarmInstance(template)
    call, ticks, args = instance.call_numeric, template.deadline_ticks, (1, 2)
    with no_gc():
        start = time.perf_counter_ns()
        for _ in range(n):
            call("add", args, ticks)
        elapsed = time.perf_counter_ns() - start
    if call("add", args, ticks) != [3]:
        raise RuntimeError("fast path returned a wrong result")
    return elapsed / n / 1000


def func_call_us(template: Template, n: int) -> float:
    store = wasmtime.Store(template.engine)
    store.set_epoch_deadline(1 << 40)
    add = template.pre.instantiate(store).exports(store)["add"]
    if not isinstance(add, wasmtime.Func):
        raise RuntimeError("the add module lacks its add export")
    with no_gc():
        start = time.perf_counter_ns()
        for _ in range(n):
            add(store, 1, 2)
        elapsed = time.perf_counter_ns() - start
    if add(store, 1, 2) != 3:
        raise RuntimeError("Func.__call__ returned a wrong result")
    return elapsed / n / 1000


def measure_calls(template: Template, repeats: int) -> list[Line]:
    fast, slow, ratio = paired(repeats, lambda: fast_call_us(template, 20_000), lambda: func_call_us(template, 2_000))
    return [Line(
        "call add(i32,i32): call_numeric vs Func.__call__", ">= 15x",
        f"{fast:.2f} µs vs {slow:.1f} µs = {ratio:.1f}x", verdict(ratio >= 15.0),
        {"call_numeric_us": fast, "func_call_us": slow, "speedup": ratio},
    )]


def in_process_lines(modules: dict[str, Module], repeats: int) -> list[Line]:
    runtime = Runtime(parse_config(raw_config(modules, 32)))
    runtime.start()
    try:
        runtime.load_all()
        wait_until(lambda: runtime.ready, READY_TIMEOUT_S, "the in-process pools")
        add = runtime.pools[(TENANT, modules["add"].sha256)].template
        lines = measure_pool(add, repeats)
        lines += measure_reset(runtime, modules, repeats)
        lines += measure_request_path(runtime, modules, repeats)
        lines += measure_calls(add, repeats)
    finally:
        runtime.close()
    return lines


# 4. HTTP: the runtime server vs a raw loopback floor, driven by the same client -------------------
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


def serve_floor(port: int) -> None:
    """Entry point of the floor subprocess."""
    import uvloop

    uvloop.run(_floor_main(port))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cores() -> tuple[int | None, int | None]:
    """(server core, client core): two distinct CPUs this process may use, if there are two."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else (None, None)


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


def draws(port: int) -> dict[str, float]:
    """The runtime's hit and miss counters, from its /metrics."""
    out = {"hit": 0.0, "miss": 0.0}
    for line in http_get(port, "/metrics")[1].decode().splitlines():
        if line.startswith("tensor_wasm_pool_draws_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = out.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
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
    import uvloop

    return uvloop.run(_throughput(port, request, connections, seconds))


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
def servers(modules: dict[str, Module], workdir: Path, core: int | None) -> Iterator[tuple[Server, Server, str]]:
    """The runtime server and the floor server, both on `core`: (runtime, floor, invoke path)."""
    config_path = workdir / "runtime.json"
    config_path.write_text(json.dumps(raw_config({"add": modules["add"]}, THROUGHPUT_CONNECTIONS * 2)))
    port = free_port()
    runtime = spawn("runtime", [sys.executable, "-m", "warmpool.cli", "runtime", "serve", "--config",
                                str(config_path), "--host", HOST, "--port", str(port), "--log-level", "WARNING"],
                    port, core, workdir)
    try:
        port = free_port()
        floor = spawn("floor", [sys.executable, "-c", "import sys; from warmpool_runtime.bench import serve_floor; "
                                "serve_floor(int(sys.argv[1]))", str(port)], port, core, workdir)
        try:
            wait_serving(runtime, "/readyz")
            wait_serving(floor, "/")
            yield runtime, floor, f"/v1/{TENANT}/{modules['add'].sha256}/add"
        finally:
            stop(floor)
    finally:
        stop(runtime)


def http_lines(modules: dict[str, Module], workdir: Path, repeats: int, seconds: float) -> list[Line]:
    """Floor and runtime runs interleaved, so both see the same background load."""
    server_core, client_core = cores()
    floor, warm = HttpFigures(), HttpFigures()
    with servers(modules, workdir, server_core) as (runtime, floor_server, path), pinned(client_core):
        request = invoke_request(path)
        before = draws(runtime.port)
        for _ in range(repeats):
            latency_round(floor_server.port, request, seconds, floor)
            latency_round(runtime.port, request, seconds, warm)
            throughput_round(floor_server.port, request, seconds, floor)
            throughput_round(runtime.port, request, seconds, warm)
        after = draws(runtime.port)
    if floor.errors or warm.errors:
        raise RuntimeError(f"error responses under load: floor {floor.errors}, runtime {warm.errors}")
    return http_report(floor, warm, {k: after[k] - before.get(k, 0.0) for k in after})


def http_report(floor: HttpFigures, warm: HttpFigures, drawn: dict[str, float]) -> list[Line]:
    f50, f99, w50, w99 = median(floor.p50), median(floor.p99), median(warm.p50), median(warm.p99)
    f_rate, w_rate = median(floor.rate), median(warm.rate)
    r50 = median([w / f for w, f in zip(warm.p50, floor.p50, strict=True)])
    r99 = median([w / f for w, f in zip(warm.p99, floor.p99, strict=True)])
    hits, misses = drawn.get("hit", 0.0), drawn.get("miss", 0.0)
    return [
        Line("HTTP floor (raw uvloop protocol), c=1", "baseline", f"p50 {f50:.0f} µs, p99 {f99:.0f} µs",
             verdict(None), {"floor_p50_us": f50, "floor_p99_us": f99}),
        Line("HTTP warm invoke, c=1", "info", f"p50 {w50:.0f} µs, p99 {w99:.0f} µs", verdict(None),
             {"invoke_p50_us": w50, "invoke_p99_us": w99}),
        Line("HTTP invoke p50 / floor p50", "<= 2x", f"{r50:.2f}x (p99 {r99:.2f}x)",
             verdict(r50 <= 2.0), {"p50_ratio": r50, "p99_ratio": r99}),
        Line(f"HTTP throughput on one core, c={THROUGHPUT_CONNECTIONS}", ">= 5000/s",
             f"{w_rate:,.0f}/s (floor {f_rate:,.0f}/s)", verdict(w_rate >= 5000.0),
             {"invoke_per_s": w_rate, "floor_per_s": f_rate}),
        Line("HTTP pool draws during the runs", "info", f"{hits:,.0f} hits, {misses:,.0f} misses",
             verdict(None), {"hits": hits, "misses": misses}),
    ]


# Report ----------------------------------------------------------------------------------------
def environment(repeats: int, seconds: float) -> dict[str, Any]:
    server_core, client_core = cores()
    return {
        "python": platform.python_version(),
        "wasmtime": importlib.metadata.version("wasmtime"),
        "cpus": len(os.sched_getaffinity(0)),
        "server_core": server_core,
        "client_core": client_core,
        "loadavg_at_start": os.getloadavg()[0],
        "repeats": repeats,
        "http_seconds_per_run": seconds,
    }


def table(lines: list[Line], env: dict[str, Any]) -> str:
    widths = [max(len(getattr(line, col)) for line in lines) for col in ("name", "goal", "measured")]
    header = ("measurement", "goal", "measured")
    rows = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  verdict"]
    for line in lines:
        rows.append(f"{line.name:<{widths[0]}}  {line.goal:<{widths[1]}}  {line.measured:<{widths[2]}}  "
                    f"{line.verdict}")
    rows.append(f"(medians over {env['repeats']} repeats; {env['cpus']} CPUs, server core {env['server_core']}, "
                f"client core {env['client_core']}; load average {env['loadavg_at_start']:.1f} at start, "
                f"{env['loadavg_at_end']:.1f} at end)")
    return "\n".join(rows)


def measure_all(repeats: int, http_seconds: float) -> list[Line]:
    with tempfile.TemporaryDirectory(prefix="warmpool-bench-") as tmp:
        workdir = Path(tmp)
        modules = write_modules(workdir)
        lines = in_process_lines(modules, repeats)
        return lines + http_lines(modules, workdir, repeats, http_seconds)


def run_bench(repeats: int, http_seconds: float, as_json: bool) -> int:
    """Run every measurement and print the table (or JSON); 1 only when the bench itself failed."""
    repeats, http_seconds = max(1, repeats), max(0.2, http_seconds)
    env = environment(repeats, http_seconds)
    try:
        lines = measure_all(repeats, http_seconds)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"warmpool bench runtime: {exc}", file=sys.stderr)
        return 1
    env["loadavg_at_end"] = os.getloadavg()[0]
    if as_json:
        print(json.dumps({"environment": env, "lines": [asdict(line) for line in lines]}, indent=2, ensure_ascii=False))
    else:
        print(table(lines, env))
    return 0
