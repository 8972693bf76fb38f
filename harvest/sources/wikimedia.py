"""Wikimedia Commons: MediaWiki API search in the File namespace, with imageinfo for each file."""

from __future__ import annotations

import json
from typing import Any

from harvest.sources.base import Hit, Page, Source, SourceError, expect, register_source

# Pillow cannot decode vector or video files, so those results are not candidates.
IMAGE_MIMES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}


@register_source("wikimedia")
class WikimediaSource(Source):
    """`action=query&generator=search&gsrnamespace=6&prop=imageinfo` (formatversion 2)."""

    max_page_size = 50

    async def search(self, text: str, cursor: str | None, page_size: int) -> Page:
        params: dict[str, Any] = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "generator": "search",
            "gsrsearch": text,
            "gsrnamespace": "6",
            "gsrlimit": str(max(1, min(page_size, self.max_page_size))),
            "prop": "imageinfo",
            "iiprop": "url|size|mime|extmetadata",
            "iiextmetadatafilter": "LicenseShortName|Artist",
        }
        if cursor:
            try:
                cont = json.loads(cursor)
            except ValueError:
                raise SourceError("bad_cursor", cursor[:80]) from None
            params.update({k: str(v) for k, v in cont.items()})
        data = await self.get_json(self.settings.source_wikimedia_url, params)
        expect(isinstance(data, dict), "response is not a JSON object")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {}
            raise SourceError("api_error", f"{err.get('code')}: {err.get('info')}")
        pages = (data.get("query") or {}).get("pages") or []
        expect(isinstance(pages, list), "query.pages is not a list (formatversion=2)")
        hits = []
        for p in sorted(pages, key=lambda p: p.get("index", 0) if isinstance(p, dict) else 0):
            info = (p.get("imageinfo") or [None])[0] if isinstance(p, dict) else None
            if not isinstance(info, dict) or not info.get("url"):
                continue
            if info.get("mime") and info["mime"] not in IMAGE_MIMES:
                continue
            ext = info.get("extmetadata") or {}
            lic = (ext.get("LicenseShortName") or {}).get("value")
            meta = {k: info[k] for k in ("width", "height", "mime") if k in info}
            # Commons gives the author as HTML; the export's ATTRIBUTION.txt credits it as text.
            artist = (ext.get("Artist") or {}).get("value")
            if isinstance(artist, str) and artist.strip():
                meta["artist"] = artist
            hits.append(
                Hit(
                    url=info["url"],
                    title=p.get("title"),
                    license=lic,
                    source_ref=info.get("descriptionurl") or str(p.get("pageid")),
                    meta=meta,
                )
            )
        cont = data.get("continue")
        return Page(hits=hits, next_page=json.dumps(cont, sort_keys=True) if cont else None)
