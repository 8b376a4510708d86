"""``limit_malloc_arenas``: the HTTP services' cap on glibc's malloc arenas.

Each case runs in a fresh interpreter: 16 threads allocate at once, then glibc's own
report (``malloc_info``) says how many arenas the process has.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import ctypes, ctypes.util, os, sys, tempfile, threading
    from twinmesh.gateways.http import limit_malloc_arenas

    if sys.argv[1] == "limit":
        assert limit_malloc_arenas(2)
    barrier = threading.Barrier(16)
    kept = []

    def work():
        barrier.wait()
        kept.append([bytearray(4096) for _ in range(2000)])

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = tempfile.mktemp()
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(path).read().count("<heap nr="))
    os.unlink(path)
    """
)


def _arenas(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_ARENA_MAX from the caller
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def test_the_cap_holds_where_the_default_grows() -> None:
    assert _arenas("limit") <= 2
    assert _arenas("default") > 2
