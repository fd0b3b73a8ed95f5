"""The TCP sockets a set of processes listens on, read from /proc (tests check that a run's
processes are reachable from this machine only)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the socket state in /proc/net/tcp{,6}


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str  # the process's comm, e.g. raylet
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.address)
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        return (mapped or address).is_loopback


def _address(field: str) -> tuple[str, int]:
    """'0100007F:1F90' -> ('127.0.0.1', 8080); the kernel writes each 32-bit word host-endian."""
    hex_address, hex_port = field.split(":")
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(hex_port, 16)


def listening_sockets() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket on this machine."""
    found = {}
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                found[fields[9]] = _address(fields[1])
    return found


def listeners(pids: list[int]) -> list[Listener]:
    """The TCP sockets these processes listen on (processes that are gone are skipped)."""
    inodes = listening_sockets()
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:[") and inode in inodes:
                found.append(Listener(pid, name, *inodes[inode]))
    return found
