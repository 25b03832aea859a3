"""The operator hands freed heap pages back to the OS: resident memory falls after a trim."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from warmpool_operator.heap import trim_heap

pytestmark = pytest.mark.unit

# A fresh process, so the heap holds only what the script makes: 100,000 blocks of 2 KB (past
# Python's small-object allocator, so from malloc), one in 64 kept alive so the heap cannot shrink
# from its top, the rest freed.
SCRIPT = textwrap.dedent("""
    from warmpool_operator.heap import trim_heap

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024

    blocks = [bytearray(2000) for _ in range(100_000)]
    kept = blocks[::64]
    del blocks
    before = rss_mib()
    print(trim_heap(), before, rss_mib())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not trim_heap(), reason="glibc's malloc_trim only")
def test_a_trim_returns_freed_pages_that_live_blocks_kept_resident() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    trimmed, before, after = out.split()
    assert trimmed == "True"
    # ~190 MiB were freed between live blocks; the trim returns most of it.
    assert int(before) - int(after) > 100, out
