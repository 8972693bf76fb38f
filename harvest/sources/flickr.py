"""Flickr REST API `flickr.photos.search` (JSON, no callback); the key comes from the environment."""

from __future__ import annotations

import os
from typing import Any

from harvest.sources.base import Hit, Page, Source, SourceError, expect, register_source

# Largest first; each `url_*` extra is present only when that size exists.
SIZES = ("url_l", "url_c", "url_z", "url_o")
# Flickr licence ids: 0 = all rights reserved, 1-6 and 9-10 = Creative Commons / public domain.
LICENSES = {
    "1": "cc-by-nc-sa 2.0",
    "2": "cc-by-nc 2.0",
    "3": "cc-by-nc-nd 2.0",
    "4": "cc-by 2.0",
    "5": "cc-by-sa 2.0",
    "6": "cc-by-nd 2.0",
    "7": "no known copyright",
    "9": "cc0",
    "10": "pdm",
    "0": "all rights reserved",
}


@register_source("flickr")
class FlickrSource(Source):
    max_page_size = 500

    def api_key(self) -> str:
        return self.settings.flickr_api_key or os.environ.get("FLICKR_API_KEY", "")

    async def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        key = self.api_key()
        if not key:
            raise SourceError("no_api_key", "set IMNET_FLICKR_API_KEY (or FLICKR_API_KEY)")
        try:
            page = int(cursor) if cursor else 1
        except ValueError:
            raise SourceError("bad_cursor", cursor[:80] if cursor else "") from None
        params: dict[str, Any] = {
            "method": "flickr.photos.search",
            "api_key": key,
            "text": text,
            "format": "json",
            "nojsoncallback": "1",
            "page": page,
            "per_page": max(1, min(page_size, 500)),
            "media": "photos",
            "content_type": "1",
            "safe_search": "1",
            "sort": "relevance",
            "license": "1,2,3,4,5,6,9,10",
            "extras": ",".join(SIZES) + ",license,owner_name",
        }
        data = await self.get_json(self.settings.source_flickr_url, params)
        expect(isinstance(data, dict), "response is not a JSON object")
        if data.get("stat") != "ok":
            raise SourceError("api_error", f"{data.get('code')}: {data.get('message')}")
        photos = data.get("photos")
        expect(
            isinstance(photos, dict) and isinstance(photos.get("photo"), list),
            "no photos.photo list",
        )
        hits = []
        for p in photos["photo"]:
            if not isinstance(p, dict):
                continue
            url = next((p[k] for k in SIZES if p.get(k)), None)
            if not url and p.get("server") and p.get("secret"):
                url = f"https://live.staticflickr.com/{p['server']}/{p['id']}_{p['secret']}_z.jpg"
            if not url:
                continue
            hits.append(
                Hit(
                    url=url,
                    title=p.get("title"),
                    license=LICENSES.get(str(p.get("license"))),
                    source_ref=f"https://www.flickr.com/photos/{p.get('owner')}/{p.get('id')}",
                    meta={
                        "id": p.get("id"),
                        "owner": p.get("owner"),
                        "ownername": p.get("ownername"),
                    },
                )
            )
        pages = int(photos.get("pages") or 0)
        more = page < pages and bool(photos["photo"])
        return Page(hits=hits, next_page=str(page + 1) if more else None)
