"""Which URLs and addresses promptdeck may send a request to on a user's behalf (webhooks; later
images fetched for a prompt): the rules, without any I/O.

A URL someone stores could otherwise make the server reach what only it can reach: its own
loopback services, the private network behind it, a cloud's metadata service. So only `https`,
no user name or password in the URL, and every address a name resolves to must be public. The
check of resolved addresses (and the connection to exactly the checked address) is
`engine/outbound_http.py`'s; this module says what is allowed.

`allow_private` (PROMPTDECK_WEBHOOKS_ALLOW_PRIVATE, for development only) also allows `http`,
loopback, private and shared (CGNAT) addresses, so a receiver on the developer's machine works.
Cloud metadata, link-local, multicast, unspecified and reserved addresses are never allowed.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from promptdeck.domain.errors import PromptdeckError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services at addresses that are not link-local (169.254.169.254 is).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
LOCAL_NAMES = ("localhost", "localhost.localdomain")


def address_problem(address: IPAddress, allow_private: bool = False) -> str | None:
    """Why a request may not go to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    never = (
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
    )
    for refused, kind in never:
        if refused:
            return f"{address} is a {kind} address"
    if address.is_loopback:
        return None if allow_private else f"{address} is a loopback address"
    if address.version == 4 and address in SHARED:
        return None if allow_private else f"{address} is a shared (CGNAT) address"
    if address.is_private:
        return None if allow_private else f"{address} is a private address"
    if address.is_reserved or not address.is_global:
        return f"{address} is a reserved address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (`10.0.0.1`, `[::1]`), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def url_problem(url: str, allow_private: bool = False) -> str | None:
    """Why `url` may not be sent to, judged without resolving its name, or None. A name that
    resolves to a refused address is refused when resolved (engine/outbound_http.py)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        return f"{parts.scheme or 'a missing'} scheme: only https URLs are allowed" + (
            "" if allow_private else " (http only with PROMPTDECK_WEBHOOKS_ALLOW_PRIVATE, in development)"
        )
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the URL must not hold a user name or password (the signature proves the sender)"
    host = parts.hostname.rstrip(".").lower()
    address = literal_address(host)
    if address is not None:
        return address_problem(address, allow_private)
    if not allow_private and (host in LOCAL_NAMES or host.endswith(".localhost")):
        return f"{host} is a loopback name"
    return None


class UrlRefused(PromptdeckError):
    """A URL the policy refuses, given by a user (answered 400 with the reason)."""

    code = "bad_request"
