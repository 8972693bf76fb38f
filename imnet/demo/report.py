"""How the demo prints its report: one short block per stage, then where everything is."""

from __future__ import annotations

from typing import Any

# Per stage, the report keys worth a line (dotted paths into the stage's section); the JSON file
# keeps everything.
HEADLINES: dict[str, list[str]] = {
    "synsets+queries": ["synsets", "roots", "queries", "queries_new"],
    "search": ["candidates_added", "pages", "queries_done"],
    "crawl": ["this_run.candidates", "this_run.images", "candidates", "reasons"],
    "curate": ["dedup", "rejected_by_reason", "totals.images_by_quality", "totals.near_duplicates"],
    "gold": ["gold_added", "gold_total"],
    "verify": [
        "rounds",
        "stopped",
        "hits",
        "assignments",
        "votes",
        "votes_per_item",
        "cost_estimate",
        "cost_all_runs",
        "workers",
        "workers_blocked",
    ],
    "consensus": ["totals", "precision", "recall", "undecided", "eligible"],
    "classes": ["chosen_count", "chosen", "rejected_reasons"],
    "export": [
        "ilsvrc.path",
        "ilsvrc.files",
        "ilsvrc.splits",
        "ilsvrc.manifest_verified",
        "webdataset.path",
        "webdataset.shards",
    ],
    "train": ["run_dir", "checkpoint", "epochs", "train_images", "top1_err", "top5_err"],
    "evaluate": [
        "top1_err",
        "top5_err",
        "ten_crop_top1_err",
        "ten_crop_top5_err",
        "images",
        "chance_top1_err",
    ],
}


def _get(d: dict[str, Any], path: str) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "-"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v) or "-"
    return str(v)


def _why_stopped(code: str) -> str:
    """Why verification stopped, in words after its code (the report keeps the code alone)."""
    if code == "round_cap":
        return " (the demo's cap on publish/collect rounds; items still undecided stay so)"
    if code == "nothing_needs_votes":
        return " (no item needs more votes)"
    if code.startswith("same_"):
        return " (the same items kept asking for votes: their consensus hovers at the threshold)"
    return ""


def format_section(name: str, section: dict[str, Any]) -> str:
    lines = []
    if "skipped" in section:
        lines.append(f"  (already done: {section['skipped']})")
    for key in HEADLINES.get(name, sorted(k for k in section if k != "seconds")):
        v = _get(section, key)
        if v is not None:
            lines.append(f"  {key}: {_fmt(v)}" + (_why_stopped(str(v)) if key == "stopped" else ""))
    lines.append(f"  [{section.get('seconds', 0):.1f}s]")
    return "\n".join(lines)


def format_footer(report: dict[str, Any]) -> str:
    st = report.get("stages", {})
    lines = ["", "== summary"]
    fx = report.get("fixture_requests", {})
    lines.append(
        f"  fixture web this run: {fx.get('search_requests', 0)} searches, "
        f"{fx.get('image_requests', 0)} image fetches"
    )
    c = st.get("consensus", {})
    if c:
        lines.append(
            f"  consensus vs fixture truth: precision {c.get('precision')}, "
            f"recall {c.get('recall')}"
        )
    e = st.get("evaluate", {}) or st.get("train", {})
    if e.get("top1_err") is not None:
        lines.append(
            f"  AlexNet: top-1 error {e['top1_err']:.3f}, top-5 error "
            f"{e.get('top5_err', float('nan')):.3f}"
        )
    x = st.get("export", {})
    for fmt in ("ilsvrc", "webdataset"):
        if _get(x, f"{fmt}.path"):
            lines.append(f"  {fmt} export: {x[fmt]['path']}")
    if st.get("train", {}).get("run_dir"):
        lines.append(f"  run dir: {st['train']['run_dir']}")
    lines.append(f"  report: {report.get('workdir')}/report.json")
    status = "ok" if report.get("ok") else f"FAILED at {report.get('failed_stage', '?')}"
    lines.append(f"  {status} in {report.get('wall_seconds', 0):.1f}s")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    parts = []
    for name in report.get("stage_order", []):
        section = report["stages"][name]
        parts.append(f"== {name}\n{format_section(name, section)}")
    parts.append(format_footer(report))
    return "\n".join(parts)
