"""Who is at the other end of a connected Unix socket, asked of the kernel (never of the peer).

Backends, chosen by capability (`BACKEND`):
- `so_peercred` where `socket` has `SO_PEERCRED` (Linux): `struct ucred` {pid, uid, gid}.
- `local_peercred` where it has `LOCAL_PEERCRED` (macOS, FreeBSD): `struct xucred` {version, uid,
  ngroups, groups}; the pid through `LOCAL_PEERPID` where the system has it (macOS), else unknown.
- `none`: no way to ask; `peer_credentials` raises UnsupportedPlatform rather than trust the peer.

Guarantee: the uid returned is the kernel's record of the peer's effective uid when it connected (or,
for the accepting side, when it listened); the owner server and the forwarding client refuse any
other uid than their own before a byte is exchanged.
"""

from __future__ import annotations

import socket
import struct
import sys

from clarity.errors import UnsupportedPlatform

_SOL_LOCAL = 0  # macOS and FreeBSD: the level of LOCAL_* options
_LOCAL_PEERCRED: int | None = getattr(socket, "LOCAL_PEERCRED", None)
_XUCRED = "=IiH"  # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups (then the groups)
# macOS's LOCAL_PEERPID (sys/un.h); CPython does not export it
_LOCAL_PEERPID: int | None = getattr(socket, "LOCAL_PEERPID", 0x002 if sys.platform == "darwin" else None)

if hasattr(socket, "SO_PEERCRED"):
    BACKEND = "so_peercred"
elif _LOCAL_PEERCRED is not None:
    BACKEND = "local_peercred"
else:
    BACKEND = "none"


def _so_peercred(sock: socket.socket) -> tuple[int | None, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid, uid


def parse_xucred(raw: bytes) -> int:
    """The uid in a `struct xucred` as LOCAL_PEERCRED returns it (version 0)."""
    if len(raw) < struct.calcsize(_XUCRED):
        raise OSError(f"LOCAL_PEERCRED returned {len(raw)} bytes")
    version, uid, _ngroups = struct.unpack_from(_XUCRED, raw)
    if version != 0:
        raise OSError(f"LOCAL_PEERCRED returned an xucred of version {version}")
    return int(uid)


def _local_peercred(sock: socket.socket) -> tuple[int | None, int]:
    assert _LOCAL_PEERCRED is not None
    uid = parse_xucred(sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, 76))  # 76: sizeof(struct xucred)
    pid: int | None = None
    if _LOCAL_PEERPID is not None:
        try:
            pid = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0]
        except OSError:
            pid = None
    return pid, uid


def peer_credentials(sock: socket.socket) -> tuple[int | None, int]:
    """(pid or None when the system cannot tell, uid) of the process at the other end of `sock`."""
    if BACKEND == "so_peercred":
        return _so_peercred(sock)
    if BACKEND == "local_peercred":
        return _local_peercred(sock)
    raise UnsupportedPlatform(f"cannot tell who is at the other end of a Unix socket on {sys.platform} "
                              "(neither SO_PEERCRED nor LOCAL_PEERCRED)")
