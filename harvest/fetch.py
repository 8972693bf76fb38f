"""The async fetcher: one aiohttp session, per-host gates, robots, SSRF guard, capped streaming."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import aiohttp

from harvest.guard import AddressPolicy, GuardedResolver, PrivateAddress
from harvest.retry import RetryPolicy, clip, parse_retry_after
from harvest.validate import ImageInfo, validate_or_reason
from imnet.core.settings import Settings

log = logging.getLogger(__name__)
REDIRECTS = {301, 302, 303, 307, 308}
NOAI = {"noai", "noimageai"}
ROBOTS_MAX_BYTES = 512 * 1024


class Outcome(Exception):
    """A final non-success outcome of one URL: status (failed|rejected), reason code, detail."""

    def __init__(
        self,
        status: str,
        code: str,
        detail: str = "",
        http_status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status, self.code, self.detail, self.http_status = status, code, detail, http_status
        self.retry_after = retry_after


class HostGate:
    """Per-host concurrency limit and minimum delay between request starts to one host."""

    def __init__(self, per_host: int, delay: float) -> None:
        self.sems: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(max(1, per_host))
        )
        self.delay = delay
        self.next_start: dict[str, float] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self.sems[host]:
            if self.delay > 0:
                loop = asyncio.get_running_loop()
                now = loop.time()
                start = max(now, self.next_start.get(host, 0.0))
                self.next_start[host] = start + self.delay
                if start > now:
                    await asyncio.sleep(start - now)
            yield


def noai_tag(values: list[str], agent: str) -> bool:
    """True when an X-Robots-Tag forbids AI use for everyone or for our agent token."""
    for value in values:
        for part in value.split(","):
            tok = part.strip().lower()
            if ":" in tok:
                who, tok = (x.strip() for x in tok.split(":", 1))
                if who not in {"*", agent}:
                    continue
            if tok in NOAI:
                return True
    return False


@dataclass
class FetchResult:
    """What happened to one candidate; `info` and `data` are set only for a valid image."""

    id: int
    status: str
    error: str | None = None
    http_status: int | None = None
    final_url: str | None = None
    info: ImageInfo | None = None
    data: bytes | None = field(default=None, repr=False)


class Fetcher:
    """Fetch and validate URLs concurrently; `async with Fetcher(settings, executor) as f`."""

    def __init__(
        self,
        settings: Settings,
        decode_executor: Executor | None = None,
        store: Callable[[bytes], str] | None = None,
        store_executor: Executor | None = None,
        store_inline: bool = False,
    ) -> None:
        """Decode in `decode_executor` (None: in the loop's own thread, for per-core processes).

        `store(data) -> sha256` (e.g. a blob store's put), when given, keeps each valid image and
        its digest becomes the image's sha256. It runs in the decode thread pool when there is
        one (one hand-off per image); else in the loop's thread when `store_inline` (a local
        write without fsync: cheaper than a thread hand-off); else in `store_executor` (None:
        the loop's default pool), because S3 PUTs wait on the network and must not block the loop.
        """
        self.s = settings
        self.policy = AddressPolicy(settings)
        self.gate = HostGate(settings.crawl_per_host, settings.crawl_host_delay)
        # Backoff 0.5 s, 1 s, 2 s, ... (jittered, at most 8 s); a longer Retry-After gives up.
        self.retry = RetryPolicy(settings.crawl_retries, base=0.5, cap=8.0, max_wait=8.0)
        self.decode_executor = decode_executor
        self.store = store
        self.store_executor = store_executor
        self.store_inline = store_inline
        # Work in a process pool must be picklable, so storing then happens in a thread.
        self.store_with_decode = store is not None and isinstance(
            decode_executor, ThreadPoolExecutor
        )
        self.robots: dict[str, asyncio.Future[RobotFileParser | None]] = {}
        self.agent = settings.user_agent.split("/", 1)[0].strip().lower()
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(
            limit=max(1, self.s.crawl_concurrency) + 8,
            limit_per_host=0,
            ttl_dns_cache=300,
            resolver=GuardedResolver(self.policy),
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.s.crawl_connect_timeout,
            sock_read=self.s.crawl_read_timeout,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": self.s.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    # -- one URL --------------------------------------------------------------------------
    async def fetch(self, cid: int, url: str) -> FetchResult:
        """Fetch one candidate URL to a final FetchResult; never raises for a bad target."""
        try:
            async with asyncio.timeout(self.s.crawl_total_timeout):
                data, status, final = await self._get_with_retries(url)
        except Outcome as o:
            return FetchResult(cid, o.status, _reason(o.code, o.detail), o.http_status)
        except TimeoutError:
            return FetchResult(cid, "failed", "timeout: total time limit reached")
        loop = asyncio.get_running_loop()
        args = (data, self.s.crawl_max_pixels, self.s.crawl_min_side)
        if self.store_with_decode:
            assert self.store is not None  # store_with_decode says so
            res = await loop.run_in_executor(
                self.decode_executor, _check_and_store, self.store, *args
            )
        else:
            if self.decode_executor is None:
                res = validate_or_reason(*args, self.store is None)
            else:
                res = await loop.run_in_executor(
                    self.decode_executor, validate_or_reason, *args, self.store is None
                )
            if self.store is not None and not isinstance(res, tuple):
                try:
                    if self.store_inline:
                        res.sha256 = self.store(data)
                    else:
                        res.sha256 = await loop.run_in_executor(
                            self.store_executor, self.store, data
                        )
                except Exception as e:  # a store failure is this candidate's failure
                    return FetchResult(cid, "failed", f"blob_error: {e}"[:300], status, final)
        if isinstance(res, tuple):
            status_ = "failed" if res[0] == "blob_error" else "rejected"
            return FetchResult(cid, status_, _reason(*res), status, final)
        return FetchResult(
            cid, "fetched", None, status, final, info=res, data=None if self.store else data
        )

    async def _get_with_retries(self, url: str) -> tuple[bytes, int, str]:
        attempt = 0
        while True:
            try:
                return await self._get(url)
            except Outcome as o:
                attempt += 1
                wait = self.retry.delay(attempt, o.code, o.retry_after)
                if wait is None:
                    raise
            await asyncio.sleep(wait)

    async def _get(self, url: str) -> tuple[bytes, int, str]:
        assert self.session is not None
        seen = {url}
        hops = 0
        while True:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise Outcome("rejected", "bad_url", url[:200])
            self._check_literal(parts.hostname)
            if self.s.crawl_respect_robots and not await self._robots_allow(url):
                raise Outcome("rejected", "robots", f"disallowed by {parts.netloc}/robots.txt")
            try:
                async with (
                    self.gate.slot(parts.netloc.lower()),
                    self.session.get(url, allow_redirects=False) as resp,
                ):
                    if resp.status in REDIRECTS:
                        loc = resp.headers.get("Location")
                        if not loc:
                            raise Outcome(
                                "failed",
                                f"http_{resp.status}",
                                "redirect without Location",
                                resp.status,
                            )
                        nxt = urljoin(url, loc)
                        hops += 1
                        if nxt in seen:
                            raise Outcome(
                                "failed", "redirect_loop", f"back to {nxt[:200]}", resp.status
                            )
                        if hops > self.s.crawl_max_redirects:
                            raise Outcome(
                                "failed",
                                "redirect_loop",
                                f"more than {self.s.crawl_max_redirects} redirects",
                                resp.status,
                            )
                        seen.add(nxt)
                        url = nxt
                        continue
                    if noai_tag(resp.headers.getall("X-Robots-Tag", []), self.agent):
                        raise Outcome("rejected", "noai", "X-Robots-Tag", resp.status)
                    if resp.status != 200:
                        raise Outcome(
                            "failed",
                            f"http_{resp.status}",
                            resp.reason or "",
                            resp.status,
                            parse_retry_after(resp.headers.get("Retry-After")),
                        )
                    return await self._read_body(resp), resp.status, url
            except Outcome:
                raise
            except aiohttp.ClientConnectorDNSError as e:
                if isinstance(e.os_error, PrivateAddress):
                    raise Outcome("rejected", "private_address", str(e.os_error)) from None
                raise Outcome("failed", "dns_error", clip(str(e))) from None
            except TimeoutError as e:
                raise Outcome("failed", "timeout", type(e).__name__) from None
            except aiohttp.ClientPayloadError as e:
                raise Outcome("failed", "truncated", clip(str(e))) from None
            except (aiohttp.ClientError, OSError, ValueError) as e:
                raise Outcome("failed", "connect_error", clip(f"{type(e).__name__}: {e}")) from None

    def _check_literal(self, host: str) -> None:
        # aiohttp skips the resolver for IP literals, so those are checked here.
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        try:
            self.policy.check(host.strip("[]"))
        except PrivateAddress as e:
            raise Outcome("rejected", "private_address", str(e)) from None

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        cap = self.s.crawl_max_bytes
        declared = resp.content_length
        if declared is not None and declared > cap:
            raise Outcome(
                "rejected", "too_large", f"Content-Length {declared} > {cap}", resp.status
            )
        buf = bytearray()
        sniffed = False
        async for chunk in resp.content.iter_chunked(1 << 16):
            buf += chunk
            if len(buf) > cap:
                raise Outcome("rejected", "too_large", f"body passed {cap} bytes", resp.status)
            if not sniffed and len(buf) >= 16:
                sniffed = True
                from harvest.validate import sniff

                # Stop at the magic bytes: an HTML page is not downloaded in full.
                if sniff(bytes(buf[:16])) is None:
                    raise Outcome(
                        "rejected", "not_image", f"starts with {bytes(buf[:12])!r}", resp.status
                    )
        return bytes(buf)

    async def _robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc.lower()}"
        fut = self.robots.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.robots[key] = fut
            try:
                fut.set_result(await self._load_robots(key))
            except BaseException as e:  # e.g. cancellation: let waiters retry
                del self.robots[key]
                fut.set_exception(e)
                fut.exception()
                raise
        parser = await asyncio.shield(fut)
        return parser is None or parser.can_fetch(self.agent, url)

    async def _load_robots(self, base: str) -> RobotFileParser | None:
        """robots.txt of a host; None (allow all) when missing or unreadable, as crawlers do."""
        assert self.session is not None
        try:
            self._check_literal(urlsplit(base).hostname or "")
            async with asyncio.timeout(self.s.crawl_read_timeout + self.s.crawl_connect_timeout):
                async with self.session.get(base + "/robots.txt", allow_redirects=False) as r:
                    if r.status != 200:
                        return None
                    body = await r.content.read(ROBOTS_MAX_BYTES)
        except (Outcome, aiohttp.ClientError, OSError, TimeoutError) as e:
            log.debug("robots.txt of %s unreadable (%s); allowing", base, e)
            return None
        rp = RobotFileParser()
        rp.parse(body.decode("utf-8", errors="replace").splitlines())
        rp.modified()
        return rp


def _check_and_store(
    store: Callable[[bytes], str], data: bytes, max_pixels: int, min_side: int
) -> ImageInfo | tuple[str, str]:
    """Validate, then store the original bytes under their sha256 (one executor hand-off)."""
    res = validate_or_reason(data, max_pixels, min_side, False)
    if isinstance(res, tuple):
        return res
    try:
        res.sha256 = store(data)
    except Exception as e:  # a store failure is this candidate's failure, not the crawl's
        return ("blob_error", str(e)[:300])
    return res


def _reason(code: str, detail: str) -> str:
    return f"{code}: {detail}" if detail else code
