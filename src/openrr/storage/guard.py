"""The outbound address guard: what render servers, conversion workers and blob clients may connect to.

A tenant chooses the URLs these processes fetch (models, containers), so without a guard they could make the
service reach what only it can reach: loopback admin ports, the cloud's metadata service (169.254.169.254), the
private network. Every connection the server side opens for a tenant therefore goes through `guarded_connect`:
the host is resolved once, every address it resolves to is checked, and the socket connects to a checked
address, so a name that resolves to a public address for the check and to a private one for the connect
(DNS rebinding) gets nowhere. Redirects are new connections and go through the same check.

Loopback, link-local, private (RFC 1918, CGNAT 100.64/10), unique-local, unspecified, multicast and other
non-global addresses, also spelled as IPv4-mapped, NAT64 or 6to4 IPv6, are refused unless the operator allows
them with `--fetch-allow` (env `OPENRR_FETCH_ALLOW`): `host`, `host:port` or CIDR entries. A refusal happens
before any packet is sent, so its message is the same whether something listens there or not.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SETTING = "--fetch-allow / OPENRR_FETCH_ALLOW"

# NAT64 (well-known and local-use prefixes) and the deprecated IPv4-compatible ::a.b.c.d: the last 32 bits are
# the IPv4 address a packet ends up at.
_NAT64 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?\.?")


class FetchRefused(Exception):
    """A connection the fetch policy does not allow; the message names the address and the setting.

    Not an OSError on purpose: HTTP libraries turn those into "connection failed" and retry them, while this is
    a decision to report as it is."""


@dataclass(frozen=True)
class _HostEntry:
    host: str
    """Lower-case, IPv6 without brackets."""
    port: int | None


@dataclass(frozen=True)
class FetchPolicy:
    """What the operator allows beyond public addresses. The empty policy (the default) allows none."""

    hosts: tuple[_HostEntry, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    entries: tuple[str, ...] = field(default=(), compare=False)
    """As the operator wrote them: handed on to child processes."""

    @classmethod
    def parse(cls, spec: str | Iterable[str] | None) -> FetchPolicy:
        """`127.0.0.1:10000,10.0.0.0/8,[::1]:8080,::1/128,azurite` (a string or a list of such strings).

        Raises ValueError naming the entry it cannot read."""
        if spec is None:
            return cls()
        texts = [spec] if isinstance(spec, str) else list(spec)
        entries = [e.strip() for text in texts for e in text.split(",") if e.strip()]
        hosts: list[_HostEntry] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"fetch-allow entry '{entry}' is not a CIDR (e.g. 10.0.0.0/8)") from None
            else:
                hosts.append(_host_entry(entry))
        return cls(tuple(hosts), tuple(networks), tuple(entries))

    def __str__(self) -> str:
        return ",".join(self.entries)

    def allows_host(self, host: str, port: int) -> bool:
        """An entry names this host (as written in the URL), alone or with this port."""
        name = _normal_host(host)
        return any(e.host == name and e.port in (None, port) for e in self.hosts)

    def allows_address(self, ip: IPAddress, port: int) -> bool:
        """An IP entry or a CIDR covers this resolved address."""
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            candidates += [embedded] if embedded is not None else []
        for address in candidates:
            if any(address in net for net in self.networks if net.version == address.version):
                return True
            if any(_ip_or_none(e.host) == address and e.port in (None, port) for e in self.hosts):
                return True
        return False


def check_address(ip: IPAddress | str, port: int, host: str | None = None, policy: FetchPolicy | None = None) -> None:
    """Raise FetchRefused unless `ip` is a public address or `policy` allows it (by `host` as written in the
    URL, host:port, the address itself or a CIDR around it)."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    policy = policy or FetchPolicy()
    shown_host = host if host is not None else str(address)
    if host is not None and policy.allows_host(host, port):
        return
    kind = non_public_kind(address)
    if kind is None or policy.allows_address(address, port):
        return
    target = _join(shown_host, port)
    via = "" if _ip_or_none(shown_host) == address else f" ({address})"
    raise FetchRefused(
        f"refused to fetch from {target}{via}: {kind} addresses are not allowed (allow it with {SETTING})"
    )


def non_public_kind(ip: IPAddress) -> str | None:
    """Which refused class `ip` falls in ("loopback", "private", …), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = non_public_kind(embedded)
            return None if inner is None else f"{inner} (embedded in IPv6 {ip})"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "unique-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _CGNAT or any(ip in n for n in _RFC1918)):
        return "private"
    if not ip.is_global:
        return "reserved or private"
    return None


def resolve_checked(host: str, port: int, policy: FetchPolicy) -> list[tuple[Any, ...]]:
    """getaddrinfo once; every address checked (one refused address refuses the host: the resolver's order must
    not decide). Returns the addrinfo tuples to connect to, in the resolver's order."""
    name = _normal_host(host)
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{name} resolved to no address")
    for info in infos:
        check_address(str(info[4][0]).split("%", 1)[0], port, host, policy)
    return infos


def guarded_connect(
    host: str,
    port: int,
    policy: FetchPolicy,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    socket_options: Sequence[tuple[Any, ...]] | None = None,
) -> socket.socket:
    """socket.create_connection, but only to addresses `resolve_checked` let through."""
    error: OSError | None = None
    for family, kind, proto, _canon, address in resolve_checked(host, port, policy):
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(address)
            return sock
        except OSError as e:
            error = e
            sock.close()
    assert error is not None
    raise error


def _host_entry(entry: str) -> _HostEntry:
    host, port_text = entry, ""
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or _ip_or_none(inside) is None or (rest and not rest.startswith(":")):
            raise ValueError(f"fetch-allow entry '{entry}' is not [IPv6]:port")
        host, port_text = inside, rest[1:]
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    elif ":" in entry and _ip_or_none(entry) is None:
        raise ValueError(f"fetch-allow entry '{entry}' is not an address: write IPv6 with a port as [::1]:8080")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"fetch-allow entry '{entry}' has an invalid port")
        port = int(port_text)
    if not host or not (_ip_or_none(host) or _HOST_NAME.fullmatch(host)):
        raise ValueError(f"fetch-allow entry '{entry}' is not a host name, host:port or CIDR")
    return _HostEntry(_normal_host(host), port)


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _ip_or_none(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 address reaches."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if int(ip) > 1 and any(ip in net for net in _NAT64):  # `::` and `::1` are IPv6's own
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
