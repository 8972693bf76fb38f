"""The demo's human-verification loop: publish HITs, simulated workers, collect, consensus, score."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from imnet.settings import Settings

log = logging.getLogger("imnet.demo")


def start_mturk(settings: Settings, workdir: Path):  # type: ignore[no-untyped-def]
    """The self-hosted MTurk server in this process, on the port the last run used if it is free."""
    from imnet.app import App
    from mturk.server import start_in_thread

    port_file = workdir / "mturk_port"
    app = App(settings)
    wanted = int(port_file.read_text()) if port_file.exists() else 0
    try:
        handle = start_in_thread(app, "127.0.0.1", wanted, mount_review=False)
    except RuntimeError:
        if not wanted:
            raise
        handle = start_in_thread(app, "127.0.0.1", 0, mount_review=False)
    port_file.write_text(str(handle.port))
    return handle


def stage_verify(ctx) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    raise NotImplementedError("mturk publish/simulate/collect API not available yet")


def stage_consensus(ctx) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from curation.consensus.plan import run_consensus

    with ctx.app.Session() as s:
        rep = run_consensus(s, "dynamic", settings=ctx.settings)
    return {"totals": rep["totals"], **score(ctx)}


def score(ctx) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Precision and recall of the labels against the fixture's ground truth.

    Scored over crowd-decided labels (the seeded hand labels are excluded). Recall's denominator
    is every eligible candidate (fetched, not rejected by quality, not a near duplicate) whose
    image truly shows its synset; eligible items never decided count as misses.
    """
    from sqlalchemy import select

    from curation.consensus.plan import eligible_candidates
    from db.models import Candidate, Label

    with ctx.app.Session() as s:
        elig = eligible_candidates(s, ctx.synsets)
        ids = [c for cids in elig.values() for c in cids]
        shas = {cid: sha for cid, sha in s.execute(
            select(Candidate.id, Candidate.image_sha256).where(Candidate.id.in_(ids)))}
        labels = {lab.candidate_id: lab for lab in s.scalars(select(Label))}
    tp = fp = fn = tn = undecided = manual = 0
    per: dict[str, dict[str, int]] = {}
    for wnid, cids in elig.items():
        p = per.setdefault(wnid, {"tp": 0, "fp": 0, "fn": 0})
        for cid in cids:
            lab = labels.get(cid)
            if lab is not None and lab.overridden:
                manual += 1
                continue
            true = ctx.truth.get(shas.get(cid, "")) == wnid
            dec = lab.decision if lab is not None else "undecided"
            if dec == "undecided":
                undecided += 1
            if dec == "accept":
                tp += true
                fp += not true
                p["tp" if true else "fp"] += 1
            else:
                fn += true
                tn += not true
                p["fn"] += true
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "undecided": undecided,
        "manual_labels_excluded": manual,
        "eligible": len(ids),
        "per_wnid": per,
    }
