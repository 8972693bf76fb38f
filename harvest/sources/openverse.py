"""Openverse images API (`GET /v1/images/?q=...&page=N&page_size=N`, optional bearer token)."""

from __future__ import annotations

from typing import Any

from harvest.sources.base import Hit, Page, Source, SourceError, expect, register_source


@register_source("openverse")
class OpenverseSource(Source):
    """Pages are numbered from 1; `page_count` says how many there are."""

    # Anonymous clients may ask for at most 20 per page; a token allows more.
    max_page_size = 20

    async def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        try:
            page = int(cursor) if cursor else 1
        except ValueError:
            raise SourceError("bad_cursor", cursor[:80] if cursor else "") from None
        size = max(1, min(page_size, 500 if self.settings.openverse_token else self.max_page_size))
        params: dict[str, Any] = {"q": text, "page": page, "page_size": size, "mature": "false"}
        headers = {}
        if self.settings.openverse_token:
            headers["Authorization"] = f"Bearer {self.settings.openverse_token}"
        data = await self.get_json(self.settings.source_openverse_url, params, headers)
        expect(isinstance(data, dict), "response is not a JSON object")
        results = data.get("results")
        expect(isinstance(results, list), "no `results` list")
        hits = []
        for r in results:
            if not isinstance(r, dict) or not r.get("url"):
                continue
            lic = r.get("license")
            if lic and r.get("license_version"):
                lic = f"cc-{lic} {r['license_version']}" if lic not in {"cc0", "pdm"} else lic
            hits.append(
                Hit(
                    url=r["url"],
                    title=r.get("title"),
                    license=lic,
                    source_ref=r.get("foreign_landing_url") or r.get("id"),
                    meta={
                        k: r[k]
                        for k in ("id", "width", "height", "provider", "creator", "filetype")
                        if r.get(k) is not None
                    },
                )
            )
        page_count = data.get("page_count")
        more = isinstance(page_count, int) and page < page_count and bool(results)
        return Page(hits=hits, next_page=str(page + 1) if more else None)
