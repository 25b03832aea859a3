"""`warmpool bench runtime`: pool, reset, call-path and HTTP costs, each against a baseline from the same run.

Reset has two strategies, chosen per module from its binary (`layout.scan`): in place (copy the
post-start memory image back, restore the exported mutable globals) or recycling (drop the Store,
stamp a fresh instance from the InstancePre). The bench serves one module of each kind, and
measures both strategies on modules that qualify for the in-place one.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import wasmtime

from warmpool_runtime.config import parse_config
from warmpool_runtime.instance import Snapshot, Template, WarmInstance
from warmpool_runtime.layout import scan
from warmpool_runtime.modules import sha256_hex
from warmpool_runtime.pool import Refiller, TuplePool
from warmpool_runtime.service import Runtime

T = TypeVar("T")

TENANT = "bench"
HOST = "127.0.0.1"
OS_PAGE = 4096
WASM_PAGE = 65536
MIB = 1 << 20

# `add` counts its calls in a mutable global. Exported, the host can restore it: reset in place.
# Unexported (as a compiler's `__stack_pointer` is), only recycling the instance resets it.
COUNTING_ADD_WAT = """(module
  (memory (export "memory") 1)
  (global $calls {export}(mut i32) (i32.const 0))
  (data (i32.const 0) "warmpool")
  (func (export "add") (param i32 i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.add (local.get 0) (local.get 1))))"""

# `touch(len)` writes one word per OS page of [0, len): dirties exactly `len` bytes of memory, and
# records `len` in an exported global (state an in-place reset restores, as a heap pointer would be).
DIRTY_WAT = """(module
  (memory (export "memory") {pages})
  (global $dirtied (export "dirtied") (mut i32) (i32.const 0))
  (data (i32.const 0) "warmpool")
  (func (export "touch") (param $len i32) (result i32) (local $p i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $len)))
      (i64.store (local.get $p) (i64.const -1))
      (local.set $p (i32.add (local.get $p) (i32.const {stride})))
      (br $next)))
    (global.set $dirtied (local.get $len))
    (local.get $p)))"""

IN_PLACE, RECYCLED = "add-in-place", "add-recycled"
SERVED = (IN_PLACE, RECYCLED)
"""The modules the HTTP runs invoke: the same guest, reset by each strategy."""
DIRTY = (("dirty-64k", WASM_PAGE, "1 page (64 KiB)"), ("dirty-1m", MIB, "1 MiB"))
"""Modules whose whole memory the guest dirties: (name, bytes, label)."""

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


def run_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on a fresh event loop of the kind the server uses."""
    import uvloop

    result: T = uvloop.run(main())
    return result


# Fixtures --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: str
    sha256: str
    strategy: str
    """The reset strategy the runtime picks for it, from its binary: "in place" or "recycle (why)"."""


def write_modules(directory: Path) -> dict[str, Module]:
    """The bench's guests, compiled from WAT and written as binary Wasm."""
    texts = {
        IN_PLACE: COUNTING_ADD_WAT.format(export='(export "calls") '),
        RECYCLED: COUNTING_ADD_WAT.format(export=""),
        **{name: DIRTY_WAT.format(pages=max(1, size // WASM_PAGE), stride=OS_PAGE) for name, size, _ in DIRTY},
    }
    out = {}
    for name, text in texts.items():
        data = bytes(wasmtime.wat2wasm(text))
        path = directory / f"{name}.wasm"
        path.write_bytes(data)
        why_not = scan(data).why_not_in_place()
        out[name] = Module(name, str(path), sha256_hex(data), "in place" if why_not is None else f"recycle ({why_not})")
    for name in (IN_PLACE, *(d[0] for d in DIRTY)):
        if out[name].strategy != "in place":
            raise RuntimeError(f"bench module {name} should qualify for in-place reset: {out[name].strategy}")
    if out[RECYCLED].strategy == "in place":
        raise RuntimeError(f"bench module {RECYCLED} should be reset by recycling")
    return out


def raw_config(modules: dict[str, Module], warm: int) -> dict[str, Any]:
    """The runtime config document (as the operator would render it) serving the given modules."""
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


def side_pool(template: Template, floor: int) -> tuple[TuplePool, Refiller]:
    """A pool of its own, with a refill thread that is not started (the caller decides when)."""
    refiller = Refiller()
    return TuplePool(template, floor, refiller), refiller


def free_pool(pool: TuplePool, refiller: Refiller) -> None:
    """Hand every instance back to the engine: let the refill thread reset what was retired, then drop all.

    The refill queue holds (pool, instance) pairs; until it is drained, those instances keep their
    Stores, and so their pooling-allocator slots, alive.
    """
    refiller.start()
    try:
        wait_until(lambda: pool.warm >= pool.floor, 10.0, "the refill thread to take back retired instances")
    finally:
        refiller.stop()
    pool.drain()
    gc.collect()


# 1. Cold instantiate vs warm acquire + release ---------------------------------------------------
def cold_instantiate_us(template: Template, n: int) -> float:
    """Median of `n` cold instantiations (Store, InstancePre.instantiate, exports resolved), each dropped untimed."""
    pool, _ = side_pool(template, 0)
    samples = []
    with no_gc():
        for _ in range(n):
            start = time.perf_counter_ns()
            instance = pool.instantiate()
            samples.append(time.perf_counter_ns() - start)
            del instance
    return median([s / 1000 for s in samples])


def timed_draws(pool: TuplePool, n: int) -> int:
    """Nanoseconds for `n` acquire + release pairs on a prewarmed pool, with the collector off."""
    acquire, release = pool.acquire, pool.release
    with no_gc():
        start = time.perf_counter_ns()
        for _ in range(n):
            instance = acquire()
            if instance is not None:
                release(instance)
        return time.perf_counter_ns() - start


def acquire_release_us(template: Template, n: int) -> float:
    """Mean caller-side cost of one hit plus its release over `n` prewarmed instances, no loop attached.

    Without a loop, release puts the used instance on the refill queue; the refill thread is not
    running while timed, so the figure is the caller's cost alone. It then resets and frees them.
    """
    pool, refiller = side_pool(template, n)
    pool.prewarm(n)
    try:
        elapsed = timed_draws(pool, n)
    finally:
        free_pool(pool, refiller)
    if pool.stats.misses:
        raise RuntimeError(f"{pool.stats.misses} of {n} draws missed in a prewarmed pool")
    return elapsed / n / 1000


def acquire_release_loop_us(template: Template, n: int) -> float:
    """As `acquire_release_us` on the serving path: a loop attached, release schedules the reset on it."""

    async def main() -> float:
        pool, refiller = side_pool(template, n)
        pool.prewarm(n)
        pool.serve_on(asyncio.get_running_loop())
        try:
            elapsed = timed_draws(pool, n)
            await asyncio.sleep(0)  # the loop runs the scheduled resets (untimed)
        finally:
            free_pool(pool, refiller)
        if pool.stats.misses:
            raise RuntimeError(f"{pool.stats.misses} of {n} draws missed in a prewarmed pool")
        return elapsed / n / 1000

    return run_loop(main)


def paired(repeats: int, measure: Callable[[], float], baseline: Callable[[], float]) -> tuple[float, float, float]:
    """(median measure, median baseline, median of per-repeat baseline/measure): both see the same load."""
    pairs = [(measure(), baseline()) for _ in range(repeats)]
    return median([m for m, _ in pairs]), median([b for _, b in pairs]), median([b / m for m, b in pairs])


def measure_pool(template: Template, repeats: int) -> list[Line]:
    warm, cold, ratio = paired(repeats, lambda: acquire_release_us(template, 400),
                               lambda: cold_instantiate_us(template, 200))
    on_loop = median([acquire_release_loop_us(template, 400) for _ in range(repeats)])
    return [
        Line("cold instantiate (Store + InstancePre + exports)", "baseline", f"{cold:.1f} µs", verdict(None),
             {"cold_instantiate_us": cold}),
        Line("warm acquire + release, no loop (-> refill queue)", "<= 2 µs",
             f"{warm:.2f} µs, {ratio:.0f}x below cold", verdict(warm <= 2.0),
             {"acquire_release_us": warm, "cold_over_warm": ratio}),
        Line("warm acquire + release, loop attached (call_soon)", "<= 2 µs", f"{on_loop:.2f} µs",
             verdict(on_loop <= 2.0), {"acquire_release_loop_us": on_loop}),
    ]


# 2. Reset cost per strategy ----------------------------------------------------------------------
def restore_us(template: Template, dirty_bytes: int, n: int) -> float:
    """Median cost of an in-place reset (`WarmInstance.restore`) after the guest dirtied `dirty_bytes`."""
    pool, _ = side_pool(template, 0)
    instance = pool.instantiate()
    snapshot = instance.snapshot()
    ticks = template.deadline_ticks
    samples = []
    with no_gc():
        for _ in range(n):
            instance.call_numeric("touch", (dirty_bytes,), ticks)
            start = time.perf_counter_ns()
            restored = instance.restore(snapshot)
            samples.append(time.perf_counter_ns() - start)
            if not restored:
                raise RuntimeError("in-place restore refused a same-sized memory")
    after = instance.snapshot()
    def values(snap: Snapshot) -> list[tuple[int, int]]:
        return [(int(g.kind), int(g.of.i64)) for g in snap.globals]  # numeric globals: kind and 8 value bytes

    if after.memory != snapshot.memory or values(after) != values(snapshot):
        raise RuntimeError("in-place restore did not bring memory and globals back to their post-start state")
    return median([s / 1000 for s in samples])


def recycle_us(template: Template, dirty_bytes: int, n: int) -> float:
    """Median cost of a recycle: drop the used instance's Store, stamp a fresh one from InstancePre.

    The guest first dirties `dirty_bytes` of its memory through its `touch` export (0: no call).
    """
    pool, _ = side_pool(template, 0)
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


def reset_line(template: Template, module: Module, dirty: int, label: str, repeats: int) -> Line:
    in_place, recycle, _ = paired(repeats, lambda: restore_us(template, dirty, 100),
                                  lambda: recycle_us(template, dirty, 100))
    picks_in_place = template.in_place_globals is not None
    pick, other = (in_place, recycle) if picks_in_place else (recycle, in_place)
    cheaper = "cheaper" if pick <= other else "dearer"
    return Line(
        f"reset, {label} dirtied: in place vs recycle", "runtime's pick cheaper",
        f"{in_place:.1f} µs vs {recycle:.1f} µs; runtime picks {'in place' if picks_in_place else 'recycle'}"
        f" ({max(pick, other) / min(pick, other):.2f}x {cheaper})",
        verdict(pick <= other),
        {f"restore_{module.name}_us": in_place, f"recycle_{module.name}_us": recycle,
         f"picks_in_place_{module.name}": float(picks_in_place)},
    )


def measure_reset(runtime: Runtime, modules: dict[str, Module], repeats: int) -> list[Line]:
    """Each module's memory is exactly what its guest dirties: one page, and 1 MiB."""
    return [reset_line(runtime.pools[(TENANT, modules[name].sha256)].template, modules[name], dirty, label, repeats)
            for name, dirty, label in DIRTY]


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


# 4. The reset is off the request's latency path ----------------------------------------------------
@dataclass(slots=True)
class RequestPath:
    """Per-request server-side costs of one round, in µs (medians over the round)."""

    after: float
    """acquire -> call -> release: the reset is scheduled, and runs once the response is out."""
    before: float
    """acquire -> call -> reset inline: what the request would pay with the reset before its response."""
    loop_reset: float
    """What each scheduled reset then costs the loop, per request, once the responses are out."""
    on_loop: float
    """Share of the bursts whose resets all ran on the loop (the rest went to the refill thread)."""


def request_path_round(pool: TuplePool, n: int, burst: int) -> RequestPath:
    """Bursts of `burst` calls (as from `burst` connections), alternately resetting after and before responding."""
    ticks = pool.template.deadline_ticks
    acquire, release, reset = pool.acquire, pool.release, pool.reset
    clock = time.perf_counter_ns

    async def one_burst(reset_after: bool, samples: list[float]) -> tuple[float, bool]:
        """Per-reset time the loop spends after the burst, and whether it ran every reset itself."""
        while pool.warm < pool.floor:  # the refill thread may still be stamping recycled instances
            await asyncio.sleep(0.0005)
        with no_gc():
            for _ in range(burst):
                start = clock()
                instance = acquire()
                if instance is None:
                    raise RuntimeError("draw missed during the request-path measurement")
                instance.call_numeric("add", (1, 2), ticks)
                if reset_after:
                    release(instance)
                else:
                    reset(instance)
                del instance
                samples.append((clock() - start) / 1000)
            start = clock()
            await asyncio.sleep(0)  # the responses are out: the loop runs the scheduled resets
            drained = (clock() - start) / 1000 / burst
        return drained, pool.warm >= pool.floor

    async def main() -> RequestPath:
        pool.serve_on(asyncio.get_running_loop())
        after: list[float] = []
        before: list[float] = []
        drained: list[float] = []
        on_loop = 0
        while len(after) < n:
            per_reset, all_on_loop = await one_burst(True, after)
            drained.append(per_reset)
            on_loop += all_on_loop
            await one_burst(False, before)
        return RequestPath(median(after), median(before), median(drained), on_loop / len(drained))

    return run_loop(main)


def measure_request_path(runtime: Runtime, modules: dict[str, Module], repeats: int) -> list[Line]:
    """Per-request cost on the serving thread with the reset scheduled after the response vs run before it."""
    lines = []
    for name in SERVED:
        module = modules[name]
        pool = runtime.pools[(TENANT, module.sha256)]
        rounds = [request_path_round(pool, 400, THROUGHPUT_CONNECTIONS) for _ in range(repeats)]
        after, before = median([r.after for r in rounds]), median([r.before for r in rounds])
        loop_reset = median([r.loop_reset for r in rounds])
        on_loop = median([r.on_loop for r in rounds])
        strategy = "in place" if pool.template.in_place_globals is not None else "recycle"
        where = "" if on_loop == 1.0 else f" ({100 * (1 - on_loop):.0f}% of bursts left some to the refill thread)"
        lines.append(Line(
            f"request path ({strategy}): reset after vs before response", "after < before",
            f"{after:.1f} µs vs {before:.1f} µs; then {loop_reset:.1f} µs/reset on the loop{where}",
            verdict(after < before),
            {f"request_reset_after_{name}_us": after, f"request_reset_before_{name}_us": before,
             f"loop_reset_after_response_{name}_us": loop_reset, f"resets_on_loop_{name}": on_loop},
        ))
    return lines


def in_process_lines(modules: dict[str, Module], repeats: int) -> list[Line]:
    runtime = Runtime(parse_config(raw_config(modules, 2 * THROUGHPUT_CONNECTIONS)))
    runtime.start()
    try:
        runtime.load_all()
        wait_until(lambda: runtime.ready, READY_TIMEOUT_S, "the in-process pools")
        for module in modules.values():
            template = runtime.pools[(TENANT, module.sha256)].template
            if (template.in_place_globals is not None) != (module.strategy == "in place"):
                raise RuntimeError(f"the runtime resets {module.name} otherwise than its layout says")
        add = runtime.pools[(TENANT, modules[IN_PLACE].sha256)].template
        lines = measure_pool(add, repeats)
        lines += measure_reset(runtime, modules, repeats)
        lines += measure_calls(add, repeats)
        lines += measure_request_path(runtime, modules, repeats)
    finally:
        runtime.close()
    return lines


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
        floor = spawn("floor", [sys.executable, "-c", "import sys; from warmpool_runtime.bench import serve_floor; "
                                "serve_floor(int(sys.argv[1]))", str(port)], port, core, workdir)
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
        "HTTP modules: add(i32,i32) bumping a call counter", "info",
        f"counter exported -> {modules[IN_PLACE].strategy}; unexported -> {modules[RECYCLED].strategy}",
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
    rows.append(f"(medians over {env['repeats']} repeats, HTTP runs of {env['http_seconds_per_run']:g} s; "
                f"{env['cpus']} CPUs, server core {env['server_core']}, "
                f"client core {env['client_core']}; load average {env['loadavg_at_start']:.1f} at start, "
                f"{env['loadavg_at_end']:.1f} at end; {env['elapsed_s']:.0f} s)")
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
    started = time.monotonic()
    try:
        lines = measure_all(repeats, http_seconds)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"warmpool bench runtime: {exc}", file=sys.stderr)
        return 1
    env["loadavg_at_end"] = os.getloadavg()[0]
    env["elapsed_s"] = time.monotonic() - started
    if as_json:
        print(json.dumps({"environment": env, "lines": [asdict(line) for line in lines]}, indent=2, ensure_ascii=False))
    else:
        print(table(lines, env))
    return 0
