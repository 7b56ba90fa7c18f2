"""Who holds a claim on a trial, whether that process still lives, and where a store lives.

A claim's owner is ``host:pid:start:nonce``: the host name, the process id, the process's start
time (``/proc/<pid>/stat`` field 22, so a recycled pid is not mistaken for the owner) and a
nonce per sweep. On the claim's own host the owner is alive exactly when that process runs (a
SIGKILLed sweep frees its claims at once); a claim from another host counts until its lease
expires (SQLite's WAL needs one host anyway, see :func:`filesystem_type`).
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

MOUNTS = "/proc/mounts"  # the mount table read by filesystem_type
# Filesystems on which SQLite's WAL (shared memory and POSIX locks across processes) is unsafe.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.glusterfs", "fuse.cephfs",
})


def _process_start(pid: int) -> str | None:
    """The start time of a live (not zombie) process from /proc, ``""`` without /proc, else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else ""
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def new_owner() -> str:
    """An owner id for one sweep of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid()) or ''}:{uuid.uuid4().hex[:8]}"


def owner_pid(owner: str) -> int | None:
    try:
        return int(owner.rsplit(":", 3)[1])
    except (IndexError, ValueError):
        return None


def owner_alive(owner: str, expires_at: float, now: float) -> bool:
    """Whether a claim still holds: its process runs (same host), or its lease has not expired."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return expires_at > now
    start = _process_start(int(parts[1]))
    if start == "":  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start is not None and start == parts[2]


def filesystem_type(path: str | os.PathLike, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (the longest mount point above it in
    ``/proc/mounts``, or in ``mounts``, text in that format); None when unknown."""
    if mounts is None:
        try:
            mounts = Path(MOUNTS).read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def is_network_filesystem(kind: str | None) -> bool:
    return kind is not None and (kind in NETWORK_FILESYSTEMS or kind.split(".")[0] in NETWORK_FILESYSTEMS)
