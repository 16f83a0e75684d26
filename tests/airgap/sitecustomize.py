"""Loaded by every Python process started with this directory on PYTHONPATH (see test_airgap.py).

It records every outbound connection and name lookup the process attempts, in the file named by
SOCLE_TEST_NET_LOG, and refuses any that is not loopback, before a single packet leaves.
"""

import ipaddress
import json
import os
import socket

_LOG = os.environ.get("SOCLE_TEST_NET_LOG")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _record(kind, target, allowed):
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(
                json.dumps({"pid": os.getpid(), "kind": kind, "target": str(target), "allowed": allowed})
                + "\n"
            )


def _is_loopback(host):
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def getaddrinfo(host, *args, **kwargs):
    allowed = _is_loopback(host)
    _record("getaddrinfo", host, allowed)
    if not allowed:
        raise socket.gaierror(socket.EAI_NONAME, f"air-gap test: lookup of {host!r} refused")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check(sock, address):
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    allowed = _is_loopback(host)
    _record("connect", address, allowed)
    if not allowed:
        raise ConnectionRefusedError(f"air-gap test: connection to {address!r} refused")


def connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
