"""In-process measurements: warm draws vs cold instantiation, reset strategies, the call path, and the
reset's place relative to the response."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import wasmtime

from warmpool_lab.runtime_bench.guests import (
    DIRTY,
    IN_PLACE,
    READY_TIMEOUT_S,
    SERVED,
    TENANT,
    THROUGHPUT_CONNECTIONS,
    Module,
    raw_config,
)
from warmpool_lab.runtime_bench.report import Line, median, verdict
from warmpool_lab.runtime_bench.support import free_pool, no_gc, prewarm, run_loop, side_pool, wait_until
from warmpool_runtime.config import parse_config
from warmpool_runtime.instance import ResetMode, Snapshot, Template, WarmInstance
from warmpool_runtime.pool import TuplePool
from warmpool_runtime.service import Runtime
from warmpool_runtime.wasmtime_adapter import value_bits


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
    prewarm(pool, n)
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
        prewarm(pool, n)
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
        return [value_bits(g) for g in snap.globals]

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
    picks_in_place = template.reset_mode is not ResetMode.RECYCLE
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
    return [reset_line(runtime.registry.pools[(TENANT, modules[name].sha256)].template, modules[name], dirty, label,
                       repeats)
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
        pool = runtime.registry.pools[(TENANT, module.sha256)]
        rounds = [request_path_round(pool, 400, THROUGHPUT_CONNECTIONS) for _ in range(repeats)]
        after, before = median([r.after for r in rounds]), median([r.before for r in rounds])
        loop_reset = median([r.loop_reset for r in rounds])
        on_loop = median([r.on_loop for r in rounds])
        strategy = "in place" if pool.template.reset_mode is not ResetMode.RECYCLE else "recycle"
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
        wait_until(lambda: runtime.registry.ready, READY_TIMEOUT_S, "the in-process pools")
        for module in modules.values():
            template = runtime.registry.pools[(TENANT, module.sha256)].template
            if (template.reset_mode is not ResetMode.RECYCLE) != (module.strategy == "in place"):
                raise RuntimeError(f"the runtime resets {module.name} otherwise than its layout says")
        add = runtime.registry.pools[(TENANT, modules[IN_PLACE].sha256)].template
        lines = measure_pool(add, repeats)
        lines += measure_reset(runtime, modules, repeats)
        lines += measure_calls(add, repeats)
        lines += measure_request_path(runtime, modules, repeats)
    finally:
        runtime.close()
    return lines


