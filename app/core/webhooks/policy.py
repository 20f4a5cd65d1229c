"""Who may be called: a webhook's URL checked at submit (https, no credentials, a bounded
length, a public host or one named in WEBHOOK_ALLOWED_HOSTS), and the same rule applied again to
the address a delivery actually connects to (`GuardedAdapter`), so a name that resolves
elsewhere later (DNS rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError

from app.core.errors import InvalidInput
from app.core.webhooks.clock import AttemptClock
from app.models import webhook as webhook_model

MAX_URL_LENGTH = webhook_model.URL_MAX_LENGTH
# Names that are never a receiver, whatever they resolve to.
BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata", "metadata.google.internal"}
USER_AGENT = "Tasker-Webhooks/1"
# The one answer for a delivery's host that is, resolves or rebinds to an internal address: the
# same whatever is listening there.
NOT_PUBLIC = "is not a public address (or resolves to one that is not); only public addresses are called."


class RefusedAddress(Exception):
    """A webhook's host is, or resolves to, an address Tasker does not call."""


def refusal(address: str) -> str | None:
    """Why `address` may not be called (loopback, private, link-local...), or None for a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None)
        if ip.teredo:
            embedded = ip.teredo[1]
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64: the IPv4 address in the low bits
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(str(embedded))
            return f"{reason} (inside the IPv6 address)" if reason else None
    for test, what in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
    ):
        if test:
            return what
    if not ip.is_global:
        return "not a public address"
    return None


def is_allowed(entries: frozenset[str], host: str, port: int | None) -> bool:
    """WEBHOOK_ALLOWED_HOSTS names `host` on `port`: as `host:port` (`[v6]:port`), or as `host`
    alone, which opens every port of it."""
    name = host.lower().rstrip(".").strip("[]")
    return name in entries or f"{name}:{port}" in entries or f"[{name}]:{port}" in entries


def matches(patterns: frozenset[str], host: str, port: int | None) -> bool:
    """`host` on `port` is named by one of `patterns`: whole (as is_allowed reads it), or by a
    `*.example.com` pattern (any name under example.com, not example.com itself)."""
    name = host.lower().rstrip(".").strip("[]")
    wildcards = [p[1:] for p in patterns if p.startswith("*.")]
    return is_allowed(patterns, host, port) or any(name.endswith(suffix) for suffix in wildcards)


@dataclass(frozen=True)
class WebhookPolicy:
    """Who may be called: webhooks' receivers, and (with `only_hosts`) http_request's targets.

    `allowed_hosts` are called even at a private address; with `only_hosts` (names or
    `*.example.com` patterns), a host must also match one of them (`setting` names where)."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    only_hosts: frozenset[str] | None = None
    setting: str = "WEBHOOK_ALLOWED_HOSTS"
    resolve: Callable[[str, int], list[str]] = lambda host, port: [
        info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookPolicy:
        return cls(config["WEBHOOK_ALLOW_HTTP"], frozenset(config["WEBHOOK_ALLOWED_HOSTS"]))

    def allowed(self, host: str, port: int) -> bool:
        return is_allowed(self.allowed_hosts, host, port)

    def why_refused(self, url: str) -> str | None:
        """Why Tasker may not call `url`, or None."""
        try:
            self._check(url)
        except RefusedAddress as exc:
            return str(exc)
        return None

    def check_url(self, url: str, field: str = "webhook.url") -> None:
        """InvalidInput naming `field` and the rule unless Tasker may call `url`."""
        try:
            self._check(url)
        except RefusedAddress as exc:
            raise InvalidInput(f"{field} is not allowed: {exc}", {field: [str(exc)]}) from None

    def _check(self, url: str) -> None:
        if len(url) > MAX_URL_LENGTH:
            raise RefusedAddress(f"Must be at most {MAX_URL_LENGTH} characters.")
        if any(ord(c) < 33 or ord(c) > 126 for c in url):
            raise RefusedAddress(
                "Must be ASCII without spaces or control characters (punycode for other names)."
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise RefusedAddress("Not a valid URL.") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            raise RefusedAddress(
                "Must be an http or https URL." if self.allow_http else "Must be an https URL."
            )
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise RefusedAddress(
                "Must not hold credentials (user:password@); the signature authenticates Tasker."
            )
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise RefusedAddress("Must name a host.")
        port = port or (443 if parts.scheme == "https" else 80)
        if self.only_hosts is not None and not matches(self.only_hosts, host, port):
            raise RefusedAddress(f"{host} is not one of the hosts {self.setting} allows.")
        if not self.allowed(host, port):
            self._check_host(host, port)

    def _check_host(self, host: str, port: int) -> None:
        name = host.lower()
        if name in BLOCKED_NAMES or name.endswith((".localhost", ".internal", ".local")):
            raise RefusedAddress(f"{host} is a local or metadata name{self._opening(host)}.")
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError):
            raise RefusedAddress(f"{host} could not be resolved.") from None
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise RefusedAddress(
                    f"{host} is {reason}; only public addresses are called{self._opening(host)}."
                )

    def _opening(self, host: str) -> str:
        """How an operator lets a receiver of their own network be called (never cloud metadata)."""
        if host.lower().startswith("metadata") or host.startswith("169.254."):
            return ""
        return f" (an operator who trusts it names it, whole, in {self.setting})"


# --- connect-time check ---------------------------------------------------------------------


class _GuardedConnection(HTTPConnection):
    """Connects only to a public address, and only to one it checked.

    The host is resolved here, every address checked, and the socket connected to the checked
    address itself (urllib3 2.8's `HTTPConnection._new_conn` connects to `_dns_host`, set for the
    call and put back after; TLS and the Host header keep the name). A name that resolves, or
    rebinds, to an internal address is refused before any packet goes there, with one wording
    whether the port behind it is open or closed, so deliveries cannot map internal ports. The
    peer is checked again after the connect. Scoped to Tasker's webhook sessions
    (GuardedAdapter); the canary tests are tests/unit/test_webhooks.py::
    test_a_connection_to_loopback_is_refused_at_connect and
    test_an_internal_port_open_or_closed_gets_one_answer.
    """

    allowed_hosts: frozenset[str] = frozenset()

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Every request, on a new or a reused connection, is under its attempt's clock."""
        clock = AttemptClock.current()
        if clock is not None:
            clock.watch(self)
        super().request(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        if is_allowed(self.allowed_hosts, self.host, self.port):
            return self._checked_clock(super()._new_conn())
        name = self._dns_host
        self._dns_host = self._public_address(name)
        try:
            sock = super()._new_conn()
        finally:
            self._dns_host = name
        if refusal(sock.getpeername()[0]):
            sock.close()
            raise RefusedAddress(f"{self.host} {NOT_PUBLIC}")
        return self._checked_clock(sock)

    def _public_address(self, name: str) -> str:
        try:
            found = socket.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [info[4][0] for info in found]
        if not addresses or any(refusal(address) for address in addresses):
            raise RefusedAddress(f"{self.host} {NOT_PUBLIC}")
        return addresses[0]

    @staticmethod
    def _checked_clock(sock: socket.socket) -> socket.socket:
        clock = AttemptClock.current()
        if clock is not None and clock.expired.is_set():
            sock.close()
            raise TimeoutError("the attempt's time limit passed while connecting")
        return sock


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections check the address they reach (see _GuardedConnection)."""

    def __init__(self, allowed_hosts: frozenset[str]):
        self.allowed_hosts = allowed_hosts
        super().__init__(pool_connections=4, pool_maxsize=4, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        hosts = self.allowed_hosts
        http = type("GuardedHTTP", (_GuardedConnection,), {"allowed_hosts": hosts})
        https = type("GuardedHTTPS", (_GuardedHTTPSConnection,), {"allowed_hosts": hosts})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }


def guarded_session(allowed_hosts: frozenset[str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the peer must be the receiver itself
    adapter = GuardedAdapter(allowed_hosts)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session
