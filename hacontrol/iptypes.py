"""Pydantic IP types with one clear message for a bad address.

A plain `IPv4Address | IPv6Address` field gives one error per union branch;
operators should read one line that says what is wrong.
"""

from __future__ import annotations

import functools
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Annotated, Any

from pydantic import BeforeValidator

# Configs repeat addresses (a real server behind many services, a VIP in many): parse each
# once, and share the (immutable) result.
_parse_address = functools.lru_cache(maxsize=65536)(ip_address)
_parse_interface = functools.lru_cache(maxsize=65536)(ip_interface)


def _to_ip(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _parse_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    if not isinstance(value, IPv4Address | IPv6Address):
        # Strict validation would say it twice, once per family.
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address")
    return value


def _to_interface(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _parse_interface(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IPv4 or IPv6 address with an optional /prefix"
            ) from None
    if not isinstance(value, IPv4Interface | IPv6Interface):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address with an optional /prefix")
    return value


def _to_network(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ip_network(value)
        except ValueError as exc:
            if "has host bits set" in str(exc):
                raise ValueError(
                    f"{value!r} has host bits set: a prefix is written with them clear "
                    f"({ip_network(value, strict=False)})"
                ) from None
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 prefix (ADDRESS/LENGTH)") from None
    if not isinstance(value, IPv4Network | IPv6Network):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 prefix (ADDRESS/LENGTH)")
    return value


IPAddress = Annotated[IPv4Address | IPv6Address, BeforeValidator(_to_ip)]
IPNetwork = Annotated[IPv4Network | IPv6Network, BeforeValidator(_to_network)]
IPInterface = Annotated[IPv4Interface | IPv6Interface, BeforeValidator(_to_interface)]
