"""The crawler's SSRF guard: which resolved addresses may be fetched, checked at DNS resolution."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from imnet.core.settings import Settings


class PrivateAddress(OSError):
    """The target resolves to an address the crawler may not reach (private, loopback, ...)."""


class AddressPolicy:
    """Which resolved addresses may be fetched: public ones, plus allowed networks or everything."""

    def __init__(self, settings: Settings) -> None:
        self.allow_all = settings.allow_private_hosts
        self.allowed = [
            ipaddress.ip_network(n.strip(), strict=False)
            for n in settings.crawl_allowed_networks.split(",")
            if n.strip()
        ]

    def check(self, addr: str) -> None:
        if self.allow_all:
            return
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        if any(ip in net for net in self.allowed):
            return
        if (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
            or not ip.is_global
        ):
            raise PrivateAddress(f"{addr} is a private, loopback or link-local address")


class GuardedResolver(AbstractResolver):
    """Resolves names and refuses private targets, so the check covers every hop and retry."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        res = await self.inner.resolve(host, port, family)
        for r in res:
            self.policy.check(r["host"])
        return res

    async def close(self) -> None:
        await self.inner.close()
