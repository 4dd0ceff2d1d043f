"""Requests Conveyor makes to URLs its tenants name (webhooks, job callbacks, datasets fetched from a URL): the SSRF
guard and a client that keeps to it.

A tenant's URL must not reach what only the server can: loopback, private and link-local networks, cloud metadata
addresses, the broker and the database. The guard allows http(s) only and refuses every address that is not
globally routable (IPv4-mapped IPv6 included), unless CONVEYOR_WEBHOOK_ALLOW names it. It checks a URL when it is
registered and again when it is used: the client resolves the name itself, checks every address, and connects the
socket to the address it checked, so a name that resolves elsewhere by then (DNS rebinding) changes nothing. It
follows no redirects, has connect and read timeouts, and reads at most RESPONSE_LIMIT bytes of a response.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import ConveyorError
from core.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

RESPONSE_LIMIT = 64 * 1024  # bytes of a receiver's answer kept (for the delivery's record); the rest is not read
URL_LIMIT = 2048
# Not globally routable, though Python's ipaddress does not say so of every one of them (e.g. 100.64.0.0/10 is
# neither private nor global to it before 3.12): carrier-grade NAT holds Alibaba's metadata address.
ALWAYS_REFUSED = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15"))


class UrlRefused(ConveyorError):
    slug, status, title = "url-refused", 422, "URL refused"


class SourceRefused(ConveyorError):
    """The server answered, but not with the file: a redirect, a 4xx. Another attempt would get the same."""

    slug, status, title = "source-refused", 422, "The URL did not give the file"


class SourceUnavailable(ConveyorError):
    """The server could not be reached or read, or answered 5xx or 429: another attempt may well succeed."""

    slug, status, title = "source-unavailable", 503, "The URL could not be read"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the name has (the operating system's resolver, as a connection would use it)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"The host {host!r} does not resolve ({exc}).") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard, split as the client needs it."""

    scheme: str
    host: str
    port: int
    path: str  # with the query string


@dataclass(frozen=True)
class Guard:
    """The rule: which URLs and addresses a tenant's request may reach. `allow` holds host names and networks
    (CONVEYOR_WEBHOOK_ALLOW) that are reachable even though they are not public, e.g. a receiver on loopback."""

    allow: tuple[str, ...] = ()
    resolver: Resolver = system_resolver
    _networks: tuple[Network, ...] = field(init=False, default=())
    _names: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        networks, names = [], set()
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", frozenset(names))

    @classmethod
    def of(cls, settings: Settings) -> Guard:
        """The guard with this deployment's allow-list (CONVEYOR_WEBHOOK_ALLOW)."""
        return cls(allow=tuple(settings.webhook_allow))

    def target(self, url: str) -> Target:
        """The URL's parts, if its form is one a request may use (no resolution yet)."""
        if len(url) > URL_LIMIT:
            raise UrlRefused(f"The URL is longer than {URL_LIMIT} characters.")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"The URL is malformed: {exc}.") from None
        if parts.scheme not in ("http", "https"):
            raise UrlRefused(f"Only http and https URLs are allowed (got {parts.scheme or 'no'} scheme).")
        if not parts.hostname:
            raise UrlRefused("The URL has no host.")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("The URL must not carry credentials; the request is signed instead.")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)

    def addresses(self, target: Target) -> list[str]:
        """The addresses the target's host resolves to, every one of them allowed; or UrlRefused."""
        name = target.host.lower().rstrip(".")
        literal = _literal_address(target.host)
        found = [literal] if literal is not None else self.resolver(target.host, target.port)
        if not found:
            raise UrlRefused(f"The host {target.host!r} does not resolve.")
        for raw in found:
            address = ipaddress.ip_address(raw.split("%")[0])  # an IPv6 zone (fe80::1%eth0) names no other host
            if not self._allowed(name, address):
                raise UrlRefused(
                    f"{target.host!r} resolves to {address}, which is not a public address (loopback, private, "
                    f"link-local, unique-local, multicast, carrier-grade NAT or metadata addresses are refused); "
                    f"CONVEYOR_WEBHOOK_ALLOW may name a receiver that must be reached there."
                )
        return found

    def check(self, url: str) -> Target:
        """The whole rule, as at registration: the form, and where the name resolves now."""
        target = self.target(url)
        self.addresses(target)
        return target

    def _allowed(self, name: str, address: Address) -> bool:
        if name in self._names or any(address in network for network in self._networks):
            return True
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
            return self._allowed(name, mapped)
        if any(address in network for network in ALWAYS_REFUSED if network.version == address.version):
            return False
        return address.is_global and not address.is_multicast


def _literal_address(host: str) -> str | None:
    """The address a host written as one means, in every form the C library reads (2130706433, 0177.0.0.1 and
    0x7f.1 are all 127.0.0.1), so that no spelling of an address reaches a resolver or escapes the check."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes  # at most RESPONSE_LIMIT bytes
    latency_ms: float


def post(guard: Guard, url: str, body: bytes, headers: dict[str, str], *, connect_timeout: float = 5.0,
         read_timeout: float = 15.0) -> Response:  # fmt: skip
    """POST `body` to `url` through the guard: resolved and checked now, connected to a checked address, never
    redirected. Raises UrlRefused (no connection made) or OSError / http.client.HTTPException."""
    target = guard.target(url)
    addresses = guard.addresses(target)
    started = time.monotonic()
    sock = _connect(addresses, target.port, connect_timeout)
    sock.settimeout(read_timeout)
    connection = _connection(target, sock, read_timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read(RESPONSE_LIMIT)
        return Response(answer.status, data, (time.monotonic() - started) * 1000)
    finally:
        connection.close()


def _connect(addresses: Iterable[str], port: int, timeout: float) -> socket.socket:
    """A socket connected to the first checked address that answers (never to a name resolved again)."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class _Connected(http.client.HTTPConnection):
    """http.client over a socket already connected (to the address the guard checked)."""

    def __init__(self, host: str, port: int, sock: socket.socket, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # the socket is connected already; a reconnect would resolve the name again
        raise http.client.HTTPException("the connection was closed; Conveyor does not reconnect on its own")


def _connection(target: Target, sock: socket.socket, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        # The certificate must be the host's: SNI and verification use the name, the socket the checked address.
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    return _Connected(target.host, target.port, sock, timeout)


@dataclass(frozen=True)
class Download:
    content_type: str
    size: int


def download(guard: Guard, url: str, write: Callable[[bytes], object], *, connect_timeout: float = 10.0,
             read_timeout: float = 60.0, deadline_seconds: float = 600.0,
             progress: Callable[[int, int], None] = lambda _done, _total: None) -> Download:  # fmt: skip
    """GET `url` through the guard (resolved and checked now, connected to a checked address, never redirected)
    and hand its body to `write` in 1 MiB chunks. `progress(bytes so far, Content-Length or 0)` after each.
    Raises UrlRefused (no connection made), SourceRefused (a redirect or a 4xx) or SourceUnavailable (no
    connection, a timeout, a 5xx or 429, or longer than `deadline_seconds` in all)."""
    target = guard.target(url)
    addresses = guard.addresses(target)
    started = time.monotonic()
    try:
        sock = _connect(addresses, target.port, connect_timeout)
        sock.settimeout(read_timeout)
        connection = _connection(target, sock, read_timeout)
    except OSError as exc:
        raise SourceUnavailable(f"{target.host}:{target.port} could not be reached ({exc}).") from None
    try:
        connection.request("GET", target.path, headers={"User-Agent": "Conveyor", "Accept-Encoding": "identity"})
        answer = connection.getresponse()
        _check_status(answer)
        total, size = int(answer.getheader("Content-Length") or 0), 0
        while chunk := answer.read(1 << 20):
            size += len(chunk)
            write(chunk)
            progress(size, total)
            if time.monotonic() - started > deadline_seconds:
                raise SourceUnavailable(f"The download took longer than {deadline_seconds:g} s "
                                        "(CONVEYOR_INGEST_URL_TIMEOUT_SECONDS).")  # fmt: skip
        if total and size < total:
            raise SourceUnavailable(f"The server closed the connection after {size} of {total} bytes.")
        return Download(answer.getheader("Content-Type") or "application/octet-stream", size)
    except (OSError, http.client.HTTPException) as exc:
        raise SourceUnavailable(f"Reading {target.host} failed: {exc or type(exc).__name__}.") from None
    finally:
        connection.close()


def _check_status(answer: http.client.HTTPResponse) -> None:
    status = answer.status
    if 300 <= status < 400:
        raise SourceRefused(f"The URL answered {status}, a redirect to {answer.getheader('Location')!r}; Conveyor "
                            "follows no redirects: give the final URL.")  # fmt: skip
    if status >= 500 or status == 429:
        raise SourceUnavailable(f"The URL answered {status} {answer.reason}.")
    if status != 200:
        raise SourceRefused(f"The URL answered {status} {answer.reason}.")
