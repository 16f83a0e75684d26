"""The egress policy: the only hosts this process may connect to, enforced for the whole process.

Socle promises that nothing leaves the machine except towards what the operator configured. The
allow-list (:func:`allowed_hosts`) is derived from the configuration: the OpenAI-compatible engines'
``base_url``, the alert webhook and SMTP relay, the OIDC ``jwks_url``, the database and Redis, plus
``residency.egress.allow_hosts`` (names, addresses or CIDR networks); loopback is allowed unless
``allow_loopback = false``. Everything else is refused before a packet leaves, and reported to the
guard's sink (the audit log, in a server).

Three layers enforce it once a guard is :func:`activate`\\ d (``socle serve`` does so when
``residency.egress.enforce`` is on, before anything else starts):

* a Python audit hook (:func:`install_audit_hook`, PEP 578) on ``socket.connect``, ``socket.sendto``
  and name lookups (``socket.getaddrinfo``, ``gethostbyname``): it covers every library that uses
  Python sockets (``smtplib``, ``urllib``, ``requests``, the model hubs' clients...);
* an event loop that checks ``create_connection``, ``getaddrinfo``, ``sock_connect`` and datagram
  endpoints (:func:`guarded_loop`): uvloop opens its connections in C, where audit hooks see nothing;
* checks in Socle's own clients (:func:`check`, :class:`GuardedTransport`), which also work where
  neither of the above is installed, e.g. in tests.

A connection to an IP address is allowed if the address is listed, in a listed network, loopback (when
allowed), or a current address of a listed name (learned from the guarded lookups, else resolved
again, at most every few seconds). Audit hooks cannot be removed, so the active guard is
process-wide state: one module-level reference, set by :func:`activate` and cleared by
:func:`deactivate`; with none active every check is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from socle.config import Settings

__all__ = [
    "EgressGuard",
    "EgressPolicy",
    "EgressRefusal",
    "EgressRefusedError",
    "EgressSink",
    "GuardedTransport",
    "activate",
    "active_guard",
    "allowed_hosts",
    "check",
    "check_url",
    "deactivate",
    "enforce",
    "guarded_loop",
    "install_audit_hook",
]

log = logging.getLogger("socle.egress")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_RESOLVE_EVERY_S = 5.0
_INET = (socket.AF_INET, socket.AF_INET6)
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefusedError(PermissionError):
    """A connection or name lookup the egress policy refused.

    An :class:`OSError` on purpose, not a :class:`~socle.errors.SocleError`: it is raised inside
    foreign code (a library's socket call), which must treat it as the network failure it is. Socle's
    clients translate it like any connection error (an engine's becomes an ``EngineError``).
    """


@dataclass(frozen=True, slots=True)
class EgressRefusal:
    """One refused attempt: to what, and through which layer."""

    host: str
    port: int | None
    via: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def describe(self) -> str:
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{where} (via {self.via}): not in the egress allow-list"


class EgressSink(Protocol):
    """Receives refusals. Called from the thread that tried to connect (maybe inside an audit hook or
    the event loop): it must not block, open sockets or raise."""

    def egress_refused(self, refusal: EgressRefusal) -> None: ...


def _host_text(host: str | bytes) -> str:
    text = host.decode("idna") if isinstance(host, bytes) else host
    return text.strip().strip("[]").rstrip(".").lower()


def _ip(host: str) -> _Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


class EgressPolicy:
    """An allow-list of host names, addresses and networks, plus the addresses learned for the names."""

    def __init__(self, hosts: Iterable[str], *, allow_loopback: bool = True) -> None:
        self.allow_loopback = allow_loopback
        self.names: set[str] = set()
        self._addresses: set[_Address] = set()
        self._networks: list[_Network] = []
        for raw in hosts:
            host = _host_text(raw)
            if not host:
                continue
            if "/" in host:
                self._networks.append(ipaddress.ip_network(host, strict=False))
            elif (address := _ip(host)) is not None:
                self._addresses.add(address)
            else:
                self.names.add(host)
        self._learned: set[_Address] = set()
        self._lock = threading.Lock()
        self._resolved_at = -_RESOLVE_EVERY_S

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(allowed_hosts(settings), allow_loopback=settings.residency.egress.allow_loopback)

    @property
    def hosts(self) -> list[str]:
        """The allow-list as configured (for display)."""
        return sorted(self.names) + sorted(str(a) for a in self._addresses) + [str(n) for n in self._networks]

    def allows(self, host: str | bytes | None) -> bool:
        """Whether ``host`` (a name or an address) may be looked up or connected to."""
        if host is None:
            return True  # getaddrinfo(None, port): a local address to bind to
        text = _host_text(host)
        if text in self.names:
            return True
        address = _ip(text)
        if address is None:
            return self.allow_loopback and text in _LOOPBACK_NAMES
        if address in self._addresses or address in self._learned:
            return True
        if any(address in network for network in self._networks):
            return True
        return self.allow_loopback and (address.is_loopback or address.is_unspecified)

    def learn(self, host: str | bytes, addresses: Iterable[str]) -> None:
        """Remember the addresses an allowed name resolved to (so that connecting to them is allowed)."""
        if _host_text(host) not in self.names:
            return
        found = {a for a in (_ip(str(x)) for x in addresses) if a is not None}
        with self._lock:
            self._learned |= found

    def needs_resolution(self) -> bool:
        """Whether names should be resolved again to judge an unknown address (rate-limited)."""
        now = time.monotonic()
        with self._lock:
            if not self.names or now - self._resolved_at < _RESOLVE_EVERY_S:
                return False
            self._resolved_at = now
            return True


class EgressGuard:
    """A policy and where its refusals are reported."""

    def __init__(self, policy: EgressPolicy, sink: EgressSink | None = None) -> None:
        self.policy = policy
        self.sink = sink
        self.refusals = 0

    def check(self, host: str | bytes | None, port: int | None, *, via: str) -> None:
        """Return if ``host`` is allowed; otherwise report and raise :class:`EgressRefusedError`."""
        if self.policy.allows(host):
            return
        self.refuse(_host_text(host or ""), port, via)

    def refuse(self, host: str, port: int | None, via: str) -> None:
        self.refusals += 1
        refusal = EgressRefusal(host, port, via)
        sink = self.sink
        try:
            if sink is not None:
                sink.egress_refused(refusal)
            else:
                log.warning("egress refused: %s", refusal.describe())
        except Exception:  # a failing sink must not turn a refusal into an allowed connection
            log.exception("egress sink failed; refusal: %s", refusal.describe())
        raise EgressRefusedError(f"egress policy: connection to {refusal.describe()}")

    def _unknown_address(self, host: str) -> bool:
        """An address not (yet) allowed, worth judging again after resolving the allowed names."""
        if self.policy.allows(host) or _ip(_host_text(host)) is None:
            return False
        return self.policy.needs_resolution()

    def check_connect(self, host: str, port: int | None, *, via: str) -> None:
        """Like :meth:`check`, for an address about to be connected to: an unknown address is judged
        again after resolving the allowed names (blocking; for synchronous socket code only)."""
        if self._unknown_address(host):
            for name in list(self.policy.names):
                with contextlib.suppress(OSError), _unguarded():
                    self.policy.learn(name, [str(i[4][0]) for i in socket.getaddrinfo(name, None)])
        self.check(host, port, via=via)

    async def check_connect_async(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int | None, *, via: str
    ) -> None:
        """:meth:`check_connect` for the event loop: names are resolved without blocking it."""
        if self._unknown_address(host):
            for name in list(self.policy.names):
                with contextlib.suppress(OSError):
                    infos = await loop.getaddrinfo(name, None)
                    self.policy.learn(name, [str(i[4][0]) for i in infos])
        self.check(host, port, via=via)


# The active guard ---------------------------------------------------------------------------------
_active: EgressGuard | None = None
_local = threading.local()
_hook_installed = False


def activate(guard: EgressGuard) -> None:
    """Make ``guard`` the process's egress guard (what the hooks and :func:`check` consult)."""
    global _active
    _active = guard


def deactivate() -> None:
    global _active
    _active = None


def active_guard() -> EgressGuard | None:
    return _active


def check(host: str | bytes | None, port: int | None = None, *, via: str) -> None:
    """Socle's clients call this with the host they are configured with, before connecting (never
    blocks: no name resolution). A no-op unless a guard is active."""
    guard = _active
    if guard is not None:
        guard.check(host, port, via=via)


def check_url(url: str | httpx.URL, *, via: str) -> None:
    """:func:`check` for a URL's host."""
    if _active is not None:
        parsed = httpx.URL(str(url))
        check(parsed.host, parsed.port, via=via)


@contextlib.contextmanager
def _unguarded() -> Iterator[None]:
    """Let the guard's own lookups through the audit hook."""
    previous = getattr(_local, "busy", False)
    _local.busy = True
    try:
        yield
    finally:
        _local.busy = previous


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket.") or _active is None or getattr(_local, "busy", False):
        return
    guard = _active
    with _unguarded():
        if event in ("socket.connect", "socket.sendto"):
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) in _INET and isinstance(address, tuple):
                guard.check_connect(str(address[0]), int(address[1]), via=event)
        elif event == "socket.getaddrinfo":
            guard.check(args[0], args[1] if isinstance(args[1], int) else None, via=event)
        elif event in ("socket.gethostbyname", "socket.gethostbyname_ex"):
            guard.check(args[0], None, via=event)


def install_audit_hook() -> None:
    """Install the socket audit hook (once per process; it does nothing while no guard is active)."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True


# The event loop -----------------------------------------------------------------------------------
def guarded_loop(base: type[asyncio.AbstractEventLoop]) -> type[asyncio.AbstractEventLoop]:
    """A subclass of the event loop class ``base`` (e.g. ``uvloop.Loop``) whose outbound connections
    and lookups are checked against the active guard."""

    class GuardedLoop(base):  # type: ignore[valid-type,misc]
        async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            guard = _active
            if guard is not None:
                guard.check(host, port if isinstance(port, int) else None, via="loop.getaddrinfo")
            infos = await super().getaddrinfo(host, port, *args, **kwargs)
            if guard is not None and host is not None:
                guard.policy.learn(host, [info[4][0] for info in infos])
            return infos

        async def create_connection(
            self, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
        ) -> Any:
            guard = _active
            if guard is not None and host is not None:
                await guard.check_connect_async(self, str(host), port, via="loop.create_connection")
            return await super().create_connection(protocol_factory, host, port, **kwargs)

        async def sock_connect(self, sock: socket.socket, address: Any) -> None:
            guard = _active
            if guard is not None and sock.family in _INET:
                await guard.check_connect_async(self, str(address[0]), address[1], via="loop.sock_connect")
            await super().sock_connect(sock, address)

        async def create_datagram_endpoint(
            self, protocol_factory: Any, local_addr: Any = None, remote_addr: Any = None, **kwargs: Any
        ) -> Any:
            guard = _active
            if guard is not None and remote_addr is not None:
                await guard.check_connect_async(
                    self, str(remote_addr[0]), remote_addr[1], via="loop.create_datagram_endpoint"
                )
            return await super().create_datagram_endpoint(protocol_factory, local_addr, remote_addr, **kwargs)

    GuardedLoop.__name__ = GuardedLoop.__qualname__ = "Guarded" + base.__name__
    return GuardedLoop


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks each request's host against the active guard first."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, via: str) -> None:
        self._inner = inner
        self._via = via

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if _active is not None:
            try:
                check(request.url.host, request.url.port, via=self._via)
            except EgressRefusedError as exc:
                raise httpx.ConnectError(str(exc), request=request) from exc
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def enforce(settings: Settings, sink: EgressSink | None = None) -> EgressGuard | None:
    """What ``socle serve`` does first: when ``residency.egress.enforce`` is on, activate a guard for the
    configured allow-list and install the audit hook. Returns the guard, or None when the policy is off.
    The caller runs its event loop from :func:`guarded_loop` (audit hooks do not see uvloop)."""
    if not settings.residency.egress.enforce:
        return None
    guard = EgressGuard(EgressPolicy.from_settings(settings), sink)
    activate(guard)
    install_audit_hook()
    return guard


# The allow-list -----------------------------------------------------------------------------------
def _url_host(url: str) -> list[str]:
    """The host(s) of a URL; several for a libpq multi-host URL (``h1:5432,h2``, ``?host=``)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    hosts = []
    for item in netloc.split(","):
        host = item.strip()
        if host.startswith("["):
            host = host[1 : host.find("]")]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        hosts.append(host)
    for value in parse_qs(parts.query).get("host", []):
        hosts += [h for h in value.split(",") if h and not h.startswith("/")]
    return [h for h in hosts if h]


def allowed_hosts(settings: Settings) -> list[str]:
    """Every host the configuration says this process may reach, sorted (extras included)."""
    hosts: list[str] = []
    for engine in settings.engines:
        base_url = getattr(engine, "base_url", None)
        if isinstance(base_url, str):
            hosts += _url_host(base_url)
    alerts = settings.alerts
    if alerts.webhook_url:
        hosts += _url_host(alerts.webhook_url)
    if alerts.smtp_host:
        hosts.append(alerts.smtp_host)
    if settings.oidc is not None and settings.oidc.jwks_url:
        hosts += _url_host(settings.oidc.jwks_url)
    for secret in (settings.database_url, settings.redis_url):
        if secret is not None and "://" in secret.get_secret_value():
            url = secret.get_secret_value()
            if not url.startswith("sqlite"):
                hosts += _url_host(url)
    hosts += settings.residency.egress.allow_hosts
    return sorted({_host_text(h) for h in hosts if _host_text(h)})
