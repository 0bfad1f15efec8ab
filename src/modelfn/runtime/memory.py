"""Memory as the platform counts it: the instance's limit, what is in use, and memory-backed folders.

On Cloud Functions gen2 and Cloud Run, ``/tmp`` is memory: a file written there
counts against the instance's limit like the process's own pages. On Lambda it
is disk (512 MB by default, up to 10 GB). Loading decides from these facts
whether a disk copy of a model is kept, and refuses a model that cannot fit
before the platform kills the instance for trying.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelfn.errors import ArtifactError

#: File systems whose files are pages of memory.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
#: A cgroup v1 "no limit" is a huge number rather than "max".
_UNLIMITED = 1 << 60


def limit_bytes(configured_mb: float = 0) -> int | None:
    """The instance's memory limit: ``configured_mb`` when set, else the cgroup's; ``None`` if unlimited."""
    if configured_mb > 0:
        return int(configured_mb * 1024 * 1024)
    for name in _CGROUP_LIMITS:
        try:
            raw = Path(name).read_text().strip()
        except OSError:
            continue
        if raw == "max":
            return None
        try:
            value = int(raw)
        except ValueError:
            continue
        return None if value >= _UNLIMITED else value
    return None


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``), 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def filesystem_of(path: str | Path) -> str:
    """The type of the file system ``path`` is on (``tmpfs``, ``ext4``...), from ``/proc/self/mountinfo``."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, rest.split()[0]
    return kind


def memory_backed(path: str | Path) -> bool:
    """Whether files under ``path`` (or under its nearest existing parent) are held in memory."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return filesystem_of(probe) in MEMORY_FILESYSTEMS


#: glibc's ``mallopt`` parameters: the size above which blocks are mapped (and unmapped when freed),
#: and the most heaps ("arenas") its threads may spread over.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_threshold_set = False
_arenas_set = False


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's ``mallopt``; False where the C library is not glibc (musl, macOS) or refuses the value."""
    try:
        import ctypes  # numpy, which every model's load imports, imports it too: earlier, not extra

        return bool(ctypes.CDLL("libc.so.6").mallopt(parameter, value))
    except (OSError, AttributeError):
        return False


def limit_arenas(count: int) -> bool:
    """Let every thread started from now on allocate from at most ``count`` heaps; once per process.

    glibc gives each new thread a heap of its own (up to 8 per CPU), made of 64 MiB pieces that it
    maps as they fill. A model loaded on a thread of its own then keeps in that heap what its parse
    freed (a 256 MiB model's peak grew 1.81x its size, bench/allocator.py). With one heap, the one
    the main thread uses, the load reuses the blocks it frees, as the same load on the main thread
    does (1.56x). Call it before modelfn starts its threads.
    ``MALLOC_ARENA_MAX`` in the environment (read by glibc at start) wins. Returns whether it applied.
    """
    global _arenas_set
    if _arenas_set or count <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return _arenas_set
    _arenas_set = _mallopt(_M_ARENA_MAX, count)
    return _arenas_set


def return_large_blocks(threshold_bytes: int) -> bool:
    """Make glibc map (and, when freed, unmap) every block of ``threshold_bytes`` or more; once per process.

    glibc raises its mmap threshold each time a mapped block is freed (up to 32 MiB), so the
    buffers a model's parse leaves behind (protobuf's copies of the weights, 16 MiB each in a
    chain of 2048x2048 MatMuls) are then served from a heap arena that is never given back, and
    a load on a thread of its own gets an arena of its own. A 256 MiB model peaked at 457 MiB
    loaded on a thread, 361 MiB on the main thread, and 280 MiB with this fixed threshold.
    Returns whether it applied (glibc only).
    """
    global _threshold_set
    if _threshold_set or threshold_bytes <= 0:
        return _threshold_set
    _threshold_set = _mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes))
    return _threshold_set


def check_fits(what: str, needed: int, configured_mb: float = 0) -> None:
    """Refuse a load that needs more memory than the instance has left, with the fix.

    ``needed`` is a floor (the model's bytes, plus any copy in a memory-backed folder): a
    framework needs at least that much, and usually more while it builds its session.
    """
    limit = limit_bytes(configured_mb)
    if limit is None:
        return
    in_use = resident_bytes()
    if in_use + needed > limit:
        mib = 1024 * 1024
        raise ArtifactError(
            f"{what} needs at least {needed / mib:,.0f} MiB of memory to load and this instance has "
            f"{(limit - in_use) / mib:,.0f} MiB of its {limit / mib:,.0f} MiB left; raise deploy.memory_mb "
            "(or MODELFN_MEMORY_LIMIT_MB where the platform's limit is not visible)"
        )
