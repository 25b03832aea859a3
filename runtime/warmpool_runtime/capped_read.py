"""Reading a small local file (the config, a token digests file) with a size cap, never past it."""

from __future__ import annotations

import os
import stat


class FileRefused(ValueError):
    """The file is over its cap or not a regular file; the message says which, without the path."""


def read_capped(path: str, cap: int) -> bytes:
    """The bytes of the regular file `path`: refused (FileRefused) when its size is over `cap`, and read at most
    `cap` + 1 bytes, so a file that grows after the size check is refused too. OSError when it cannot be read."""
    # O_NONBLOCK: opening a FIFO put there by mistake must not wait for a writer.
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("is not a regular file")
        if st.st_size > cap:
            raise FileRefused(f"is {st.st_size} bytes, over the cap of {cap}")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise FileRefused(f"grew over the cap of {cap} bytes while it was read")
    return data
