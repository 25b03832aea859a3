"""WASI host calls that can wait, bounded by the calling guest's deadline: a sleep never outlasts it.

An epoch deadline interrupts Wasm code only: a guest blocked inside wasmtime's own `poll_oneoff`
(a clock sleep) would hold its worker thread for as long as it asked. The runtime defines
`poll_oneoff` itself instead; it sleeps at most until the deadline of the call on this thread, and
there traps with `DEADLINE_TRAP`, which the call reports as `deadline_exceeded` (408).

The other WASI calls that can wait in principle cannot here: the guest has no preopened files or
sockets, stdin is empty and stdout/stderr discard, so reads and writes answer at once.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from typing import Any

import wasmtime

from warmpool_runtime.wasmtime_adapter import caller_memory, define_host_func, new_trap

WASI_MODULE = "wasi_snapshot_preview1"
DEADLINE_TRAP = "deadline reached while the guest waited in a host call"
"""The message of the trap a deadline raises inside a host call (its trap code is None)."""

_ERRNO_BADF, _ERRNO_FAULT, _ERRNO_INVAL = 8, 21, 28
_CLOCK_REALTIME, _CLOCK_MONOTONIC = 0, 1
_EVENT_CLOCK, _EVENT_FD_READ, _EVENT_FD_WRITE = 0, 1, 2
_ABSTIME = 1
_SUBSCRIPTION_SIZE, _EVENT_SIZE = 48, 32
_SUBSCRIPTION_HEAD = struct.Struct("<QB")  # userdata, event type (the union follows at offset 16)
_CLOCK = struct.Struct("<I4xQQH")  # clock id, timeout, precision, flags
_FD = struct.Struct("<I")
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, errno, event type, fd nbytes, fd flags
_U32 = struct.Struct("<I")
_MASK32 = 0xFFFF_FFFF


class _CallState(threading.local):
    """The call running on this thread, as its host calls see it."""

    deadline_ns = 0
    """`time.monotonic_ns()` at which the call's deadline passes; 0 (the default) allows no wait at all."""
    clock_base_ns = 0
    """`time.monotonic_ns()` when the instance's WASI context began: its monotonic clock's zero."""


_STATE = _CallState()


def enter_call(deadline_ns: int, clock_base_ns: int) -> None:
    """Host calls made from this thread from now on belong to a call with this deadline and WASI clock."""
    state = _STATE
    state.deadline_ns = deadline_ns
    state.clock_base_ns = clock_base_ns


def define_wasi(linker: wasmtime.Linker) -> None:
    """WASI preview 1 in `linker`, with `poll_oneoff` replaced by the deadline-bounded one."""
    linker.define_wasi()
    linker.allow_shadowing = True
    try:
        # A FuncType binds to the first engine it is used with: one per linker.
        i32 = wasmtime.ValType.i32()
        define_host_func(linker, WASI_MODULE, "poll_oneoff", wasmtime.FuncType([i32] * 4, [i32]), poll_oneoff)
    finally:
        linker.allow_shadowing = False


def poll_oneoff(caller: Any, slots: Any) -> int:
    """WASI `poll_oneoff(in, out, nsubscriptions, nevents_out) -> errno`, waiting at most until the deadline."""
    in_ptr, out_ptr = slots[0].i32 & _MASK32, slots[1].i32 & _MASK32
    count, nevents_ptr = slots[2].i32 & _MASK32, slots[3].i32 & _MASK32
    memory = caller_memory(caller)
    if memory is None:
        slots[0].i32 = _ERRNO_FAULT
        return 0
    base, size = memory
    if count == 0:
        slots[0].i32 = _ERRNO_INVAL
        return 0
    if (in_ptr + count * _SUBSCRIPTION_SIZE > size or out_ptr + count * _EVENT_SIZE > size
            or nevents_ptr + 4 > size):
        slots[0].i32 = _ERRNO_FAULT
        return 0
    view = (ctypes.c_char * size).from_address(base)
    state = _STATE
    now, wall = time.monotonic_ns(), time.time_ns()
    ready: list[tuple[int, int, int]] = []  # (userdata, errno, event type)
    clocks: list[tuple[int, int]] = []  # (when it fires, in time.monotonic_ns(); userdata)
    for i in range(count):
        offset = in_ptr + i * _SUBSCRIPTION_SIZE
        userdata, kind = _SUBSCRIPTION_HEAD.unpack_from(view, offset)
        if kind == _EVENT_CLOCK:
            clock, timeout, _, flags = _CLOCK.unpack_from(view, offset + 16)
            absolute = flags & _ABSTIME
            if clock == _CLOCK_MONOTONIC:
                clocks.append((state.clock_base_ns + timeout if absolute else now + timeout, userdata))
            elif clock == _CLOCK_REALTIME:
                clocks.append((now + (timeout - wall if absolute else timeout), userdata))
            else:
                ready.append((userdata, _ERRNO_INVAL, kind))
        elif kind in (_EVENT_FD_READ, _EVENT_FD_WRITE):
            (fd,) = _FD.unpack_from(view, offset + 16)
            usable = fd == 0 if kind == _EVENT_FD_READ else fd in (1, 2)
            ready.append((userdata, 0 if usable else _ERRNO_BADF, kind))
        else:
            slots[0].i32 = _ERRNO_INVAL
            return 0
    if not ready:
        due = min(when for when, _ in clocks)
        if due > state.deadline_ns:
            _sleep_until(state.deadline_ns)
            return new_trap(DEADLINE_TRAP)
        _sleep_until(due)
        now = time.monotonic_ns()
        ready = [(userdata, 0, _EVENT_CLOCK) for when, userdata in clocks if when <= now]
    for i, (userdata, errno, kind) in enumerate(ready):
        _EVENT.pack_into(view, out_ptr + i * _EVENT_SIZE, userdata, errno, kind, 0, 0)
    _U32.pack_into(view, nevents_ptr, len(ready))
    slots[0].i32 = 0
    return 0


def _sleep_until(when_ns: int) -> None:
    while (left := when_ns - time.monotonic_ns()) > 0:
        time.sleep(left / 1e9)
