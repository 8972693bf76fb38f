"""DATASHEET.md per export (after Gebru et al., "Datasheets for Datasets"), written from the
database with aggregate queries and one streamed scan of failure reasons: byte-reproducible (no
clock, no paths, no export name), bounded memory at ILSVRC scale."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet.core.app import App

from curation.export.base import ClassInfo, write_file

SETTINGS = (
    "phash_radius",
    "consensus_algorithm",
    "consensus_threshold",
    "consensus_max_votes",
    "consensus_reject_below",
    "consensus_fixed_votes",
    "consensus_fp_cost",
    "consensus_fn_cost",
)
STREAM = 10_000


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imnet")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _reasons(app: App, column: Any, where: Any) -> Counter[str]:
    """Count `code: detail` texts by code, streamed (codes are few; the details are not)."""
    from sqlalchemy import select

    out: Counter[str] = Counter()
    with app.Session() as s:
        for (text,) in s.execute(select(column).where(where).execution_options(yield_per=STREAM)):
            out[(text or "unknown").split(":", 1)[0].strip() or "unknown"] += 1
    return out


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _items(lines: list[str]) -> list[str]:
    return lines or ["  - none"]


def _counts(pairs: Any) -> list[tuple[Any, ...]]:
    return sorted((str(k), int(v)) for k, v in pairs)


def write_datasheet(
    app: App,
    name: str,
    params: dict[str, Any],
    classes: list[ClassInfo],
    root: Path,
    split_counts: dict[str, int],
    manifest_sha256: str,
    licences: dict[str, int],
) -> dict[str, Any]:
    """Write root/DATASHEET.md; returns its manifest entry."""
    from sqlalchemy import distinct, func, select

    from db.models import Candidate, Export, ExportItem, Image, Label, Query, Vote

    wnids = [c.wnid for c in classes]
    with app.Session() as s:
        export_id = s.scalar(select(Export.id).where(Export.name == name))
        in_set = Candidate.wnid.in_(wnids)
        queries = s.execute(
            select(Query.source, Query.lang, func.count(), func.sum(Query.n_results))
            .where(Query.wnid.in_(wnids))
            .group_by(Query.source, Query.lang)
        ).all()
        by_status = s.execute(
            select(Candidate.status, func.count()).where(in_set).group_by(Candidate.status)
        ).all()
        by_source = s.execute(
            select(Candidate.source, func.count()).where(in_set).group_by(Candidate.source)
        ).all()
        near = s.scalar(
            select(func.count(distinct(Image.sha256)))
            .join(Candidate, Candidate.image_sha256 == Image.sha256)
            .where(in_set, Image.near_dup_of.is_not(None))
        )
        workers = s.scalar(select(func.count(distinct(Vote.worker_id))).where(Vote.wnid.in_(wnids)))
        votes = s.scalar(select(func.count()).select_from(Vote).where(Vote.wnid.in_(wnids)))
        per_item = s.execute(
            select(
                func.count(),
                func.min(Label.votes_yes + Label.votes_no),
                func.max(Label.votes_yes + Label.votes_no),
                func.sum(Label.votes_yes + Label.votes_no),
            ).where(Label.wnid.in_(wnids))
        ).one()
        decisions = s.execute(
            select(Label.decision, func.count())
            .where(Label.wnid.in_(wnids))
            .group_by(Label.decision)
        ).all()
        exported = (
            select(ExportItem.wnid, Label.decided_by, Label.posterior)
            .join(Label, Label.candidate_id == ExportItem.candidate_id)
            .where(ExportItem.export_id == export_id, ExportItem.status == "done")
            .subquery()
        )
        decided_by = s.execute(
            select(exported.c.decided_by, func.count()).group_by(exported.c.decided_by)
        ).all()
        precision = dict(
            (w, (n, p))
            for w, n, p in s.execute(
                select(exported.c.wnid, func.count(), func.avg(exported.c.posterior)).group_by(
                    exported.c.wnid
                )
            )
        )
        per_split = s.execute(
            select(ExportItem.split, ExportItem.wnid, func.count())
            .where(ExportItem.export_id == export_id, ExportItem.status == "done")
            .group_by(ExportItem.split, ExportItem.wnid)
        ).all()
    failed = _reasons(app, Candidate.error, in_set & Candidate.status.in_(("failed", "rejected")))
    quality = _reasons(
        app,
        Image.quality_reason,
        (Image.quality == "rejected")
        & Image.sha256.in_(select(Candidate.image_sha256).where(in_set)),
    )
    status = dict(_counts(by_status))
    n_items, vmin, vmax, vsum = per_item
    spread: dict[str, list[int]] = {}
    for part, _, n in per_split:
        spread.setdefault(part, []).append(int(n))
    settings = {k: getattr(app.settings, k, None) for k in SETTINGS}
    options = {k: v for k, v in sorted(params.items()) if k not in ("path", "plan", "wnids")}
    options.pop("dropped_classes", None)
    options.pop("planned_dropped_images", None)

    out = [
        "# Datasheet",
        "",
        "After Gebru et al., *Datasheets for Datasets* (2021). Written by `imnet export` from its",
        "database; every figure below can be recomputed from it.",
        "",
        "## Motivation and composition",
        "",
        f"Image classification data in the ILSVRC-2012 mould: {len(classes)} WordNet classes "
        f"(class set `{params.get('set')}`), one class per image, format `{params.get('format')}`.",
        "",
        *_table(
            ("split", "images", "min per class", "max per class"),
            [
                (p, split_counts.get(p, 0), min(spread.get(p, [0])), max(spread.get(p, [0])))
                for p in ("train", "val", "test")
            ],
        ),
        "Test labels are "
        + (
            "included (private export)."
            if params.get("with_test_labels")
            else "left out, as ILSVRC did (public export); the manifest carries no worker ids."
        ),
        "",
        "## Collection: sources and queries",
        "",
        *_table(
            ("source", "lang", "queries", "results"),
            [(src, lang, int(n), int(r or 0)) for src, lang, n, r in sorted(queries, key=str)],
        ),
        *_table(("source API", "candidates"), _counts(by_source)),
        "## Counts per stage",
        "",
        f"- candidates: {sum(status.values())}",
        *[f"- candidates {k}: {v}" for k, v in status.items()],
        f"- images rejected by the quality filters: {sum(quality.values())}",
        *[f"  - {k}: {v}" for k, v in sorted(quality.items())],
        f"- near-duplicate images (clustered, not exported): {int(near or 0)}",
        "- candidates failed or rejected, by reason:",
        *_items([f"  - {k}: {v}" for k, v in sorted(failed.items())]),
        "- left out at export:",
        *_items(
            [f"  - {k}: {v}" for k, v in sorted(params.get("planned_dropped_images", {}).items())]
        ),
        "",
        "## Verification",
        "",
        f"- workers: {int(workers or 0)}; votes: {int(votes or 0)}",
        f"- labels: {int(n_items or 0)}; votes per item: min {int(vmin or 0)}, max {int(vmax or 0)}, "
        f"mean {(int(vsum or 0) / n_items if n_items else 0):.2f}",
        *[f"- label decisions {k}: {v}" for k, v in _counts(decisions)],
        f"- consensus algorithm (setting): `{settings['consensus_algorithm']}`; exported labels "
        "decided by: " + ", ".join(f"{k} {v}" for k, v in _counts(decided_by)),
        "- estimated precision per class: the mean posterior of the exported images' labels",
        "",
        *_table(
            ("index", "wnid", "words", "images", "est. precision"),
            [
                (
                    c.index,
                    c.wnid,
                    ", ".join(c.words),
                    precision.get(c.wnid, (0, None))[0],
                    f"{precision[c.wnid][1]:.4f}"
                    if precision.get(c.wnid, (0, None))[1] is not None
                    else "n/a",
                )
                for c in classes
            ],
        ),
        "## Class selection",
        "",
        f"Class set `{params.get('set')}`: {len(classes)} classes exported; left out:",
        *_items([f"- {w}: {why}" for w, why in sorted(params.get("dropped_classes", {}).items())]),
        "",
        "## Licences",
        "",
        "Per image in `manifest.jsonl`, each shard sample's `.json` and `ATTRIBUTION.txt`.",
        f"Licences allowed: {', '.join(params.get('licenses') or ['all'])}.",
        "",
        *_table(("licence", "images"), sorted(licences.items())),
        "## Checksums and provenance",
        "",
        f"- `manifest.jsonl` sha256: `{manifest_sha256}`; `SHA256SUMS` lists every file.",
        f"- imnet version: {_version()}",
        "- export options: `" + ", ".join(f"{k}={v}" for k, v in options.items()) + "`",
        "- settings: `" + ", ".join(f"{k}={v}" for k, v in settings.items()) + "`",
        "",
    ]
    return write_file(root, "DATASHEET.md", "\n".join(out).encode())
