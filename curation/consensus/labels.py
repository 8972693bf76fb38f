"""Writing consensus results to `label`: set-based batched upserts that never touch a hand label."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
from sqlalchemy import bindparam, or_, update
from sqlalchemy.orm import Session

from curation.consensus.base import ACCEPT, INSUFFICIENT, REJECT, UNDECIDED
from db.models import Label

# Rows per executemany call (SQLAlchemy pages them into statements of <= 1,000 rows and under
# the driver's bound-parameter limit).
UPSERT_ROWS = 5_000
_COLUMNS = ("votes_yes", "votes_no", "posterior", "decision", "decided_by", "overridden")


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT .. ON CONFLICT DO UPDATE, built once. RETURNING makes SQLAlchemy's executemany
    send multi-row VALUES pages ("insertmanyvalues"), one statement per ~1,000 rows, from one
    compiled form; a row is updated only when it is no hand label and a value changed."""
    from db.tx import dialect_insert

    t = Label.__table__
    stmt = dialect_insert(dialect)(t)
    changed = or_(*(t.c[c].is_distinct_from(stmt.excluded[c]) for c in _COLUMNS))
    return stmt.on_conflict_do_update(
        index_elements=[t.c.candidate_id],
        set_={c: stmt.excluded[c] for c in ("wnid", *_COLUMNS, "updated_at")},
        where=t.c.overridden.is_(False) & changed,
    ).returning(t.c.candidate_id)


def write_labels(
    session: Session,
    wnid: str,
    algorithm: str,
    candidate_ids: list[int],
    yes: np.ndarray,
    no: np.ndarray,
    p_yes: np.ndarray,
    decisions: np.ndarray,
    manual: dict[int, str],
    existing: np.ndarray,
) -> dict[str, int]:
    """Upsert one synset's labels; returns counts {accept, reject, undecided, manual}.

    Items with votes (or flagged insufficient_crowd) get a row; an item without votes keeps no row unless it had one
    (`existing`: ids of its synset's machine labels, read before), which is reset to undecided.
    Hand labels (`manual`, and any override made since it was read: the upsert's WHERE) keep
    their decision; only their vote counts are refreshed for the review page. A row is
    rewritten only when a value changed, so `updated_at` says when a label last moved.
    """
    per = {ACCEPT: 0, REJECT: 0, UNDECIDED: 0, INSUFFICIENT: 0, "manual": 0}
    ids = np.asarray(candidate_ids, dtype=np.int64)
    total = np.asarray(yes) + np.asarray(no)
    is_manual = np.fromiter((c in manual for c in candidate_ids), bool, len(ids))
    had_row = np.isin(ids, existing)
    # An item the crowd cannot decide keeps a row even without votes: it waits for no one.
    stuck = np.asarray(decisions, dtype=object) == INSUFFICIENT
    decided = (total > 0) | stuck
    write = ~is_manual & (decided | had_row)
    now = time.time()
    decs = np.where(decided, decisions, UNDECIDED)
    rows = [
        {
            "candidate_id": int(ids[i]),
            "wnid": wnid,
            "votes_yes": int(yes[i]),
            "votes_no": int(no[i]),
            "posterior": float(p_yes[i]) if decided[i] else None,
            "decision": str(decs[i]),
            "decided_by": algorithm,
            "overridden": False,
            "updated_at": now,
        }
        for i in np.flatnonzero(write).tolist()
    ]
    for d in (ACCEPT, REJECT, UNDECIDED, INSUFFICIENT):
        per[d] = int((decs[write] == d).sum())
    conn = session.connection()
    upsert = _upsert(conn.dialect.name)
    for start in range(0, len(rows), UPSERT_ROWS):
        conn.execute(upsert, rows[start : start + UPSERT_ROWS])
    hand = [
        {"cid": int(ids[i]), "y": int(yes[i]), "n": int(no[i]), "now": now}
        for i in np.flatnonzero(is_manual).tolist()
    ]
    if hand:
        t = Label.__table__
        refresh = (
            update(t)
            .where(
                t.c.candidate_id == bindparam("cid"),
                or_(t.c.votes_yes != bindparam("y"), t.c.votes_no != bindparam("n")),
            )
            .values(votes_yes=bindparam("y"), votes_no=bindparam("n"), updated_at=bindparam("now"))
        )
        session.connection().execute(refresh, hand)
    for cid in np.asarray(candidate_ids)[is_manual].tolist():
        d = manual[cid]
        per["manual"] += 1
        per[d if d in per else UNDECIDED] += 1
    return per


def override_label(session: Session, cid: int, decision: str) -> str | None:
    """A hand decision on candidate `cid` (accept or reject; `clear` hands it back to the
    algorithms, and the next consensus run decides it). Commits; returns its wnid, or None when
    there is no such candidate."""
    from db.models import Candidate

    cand = session.get(Candidate, cid)
    if cand is None:
        return None
    lab = session.get(Label, cid)
    if lab is None:
        lab = Label(candidate_id=cid, wnid=cand.wnid, votes_yes=0, votes_no=0)
        session.add(lab)
    if decision == "clear":
        lab.decision, lab.decided_by, lab.overridden, lab.posterior = UNDECIDED, None, False, None
    else:
        lab.decision, lab.decided_by, lab.overridden = decision, "manual", True
        lab.posterior = 1.0 if decision == ACCEPT else 0.0
    session.commit()
    return cand.wnid
