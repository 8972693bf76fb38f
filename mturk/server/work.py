"""Worker-side operations of the self-hosted server: find HITs, accept, submit, return."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError

from mturk.server.common import MTurkError, is_system_qual, new_id
from mturk.server.models import (
    SandboxAssignment,
    SandboxGate,
    SandboxHit,
    SandboxHitType,
    SandboxHitTypeExclusion,
    SandboxWorkerBlock,
    SandboxWorkerQualification,
)
from mturk.server.store import DONE, Store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_COMPARE = {
    "LessThan": lambda v, xs: v < xs[0],
    "LessThanOrEqualTo": lambda v, xs: v <= xs[0],
    "GreaterThan": lambda v, xs: v > xs[0],
    "GreaterThanOrEqualTo": lambda v, xs: v >= xs[0],
    "EqualTo": lambda v, xs: v == xs[0],
    "NotEqualTo": lambda v, xs: v != xs[0],
    "In": lambda v, xs: v in xs,
    "NotIn": lambda v, xs: v not in xs,
}


class WorkError(Exception):
    """A refused worker action: HTTP status plus a one-line reason shown to the worker."""

    def __init__(self, http: int, message: str) -> None:
        super().__init__(message)
        self.http = http
        self.message = message


class WorkerOps:
    """What the worker site does; every check happens in the same transaction as the write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._fields: OrderedDict[str, frozenset[str]] = OrderedDict()

    def _quals_ok(
        self, s: Session, worker_id: str, reqs: list[dict] | None, absent_checked: bool = False
    ) -> bool:
        """Whether the worker meets every requirement; `absent_checked`: the `DoesNotExist`
        ones were already checked in SQL (the poll's exclusion filter)."""
        for r in reqs or []:
            qid = str(r.get("QualificationTypeId", ""))
            if is_system_qual(qid) or (absent_checked and r.get("Comparator") == "DoesNotExist"):
                continue
            wq = s.get(SandboxWorkerQualification, (qid, worker_id))
            val = wq.integer_value if wq is not None and wq.status == "Granted" else None
            comp = r.get("Comparator")
            if comp == "Exists":
                ok = val is not None
            elif comp == "DoesNotExist":
                ok = val is None
            else:
                xs = [int(x) for x in r.get("IntegerValues") or []]
                ok = (
                    val is not None
                    and bool(xs)
                    and _COMPARE.get(str(comp), lambda v, x: False)(val, xs)
                )
            if not ok:
                return False
        return True

    def _gates(self, s: Session, worker_id: str) -> list[str] | None:
        """The gates (HIT types' `Exists` requirements) the worker passes, or None when they
        pass every one (no gate filter needed)."""
        gates = list(s.scalars(select(SandboxGate.gate)))
        if not gates:
            return None
        need = {q for g in gates for q in g.split(",")}
        Q = SandboxWorkerQualification
        held = set(
            s.scalars(
                select(Q.qualification_type_id).where(
                    Q.worker_id == worker_id,
                    Q.status == "Granted",
                    Q.qualification_type_id.in_(sorted(need)),
                )
            )
        )
        passed = [g for g in gates if set(g.split(",")) <= held]
        return None if len(passed) == len(gates) else passed

    def available(self, worker_id: str, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """HITs this worker may accept now, soonest to expire first.

        An index range scan over the open HITs (is_open, expiration > now) that skips those
        whose free slots are all held by pending work (full_until) and those the worker has
        an assignment of; finished, expired and deleted HITs are never read."""
        now = time.time()
        H, A, T = SandboxHit, SandboxAssignment, SandboxHitType
        mine = exists().where(A.hit_id == H.hit_id, A.worker_id == worker_id)
        X, Q = SandboxHitTypeExclusion, SandboxWorkerQualification
        shut_out = exists().where(
            X.hit_type_id == H.hit_type_id,
            Q.qualification_type_id == X.qualification_type_id,
            Q.worker_id == worker_id,
            Q.status == "Granted",
        )
        q = (
            select(
                H.hit_id,
                H.max_assignments,
                H.expiration,
                T.title,
                T.description,
                T.reward,
                T.assignment_duration,
                T.qualification_requirements,
            )
            .join(T, T.hit_type_id == H.hit_type_id)
            .where(
                H.is_open.is_(True),
                H.expiration > now,
                or_(H.full_until.is_(None), H.full_until <= now),
                ~mine,
                ~shut_out,
            )
            .order_by(H.expiration, H.hit_id)
        )
        out: list[dict[str, Any]] = []
        with self.store.Session() as s:
            if s.get(SandboxWorkerBlock, worker_id) is not None:
                return []
            passed = self._gates(s, worker_id)
            if passed is not None:
                # Only the gates the worker passes, each an index range: HITs behind the others
                # (a new worker's view of the regular HITs) are never read.
                q = q.where(
                    or_(H.gate.is_(None), H.gate.in_(passed)) if passed else H.gate.is_(None)
                )
            skipped = 0
            quals: dict[str, bool] = {}
            # Qualification checks are per HIT type: read the page's worth, then more only while
            # some were skipped, up to 200 rows beyond it (keyset on the scan's own order).
            batch, budget, last = limit + offset, limit + offset + 200, None
            while len(out) < limit and budget > 0:
                qq = q
                if last is not None:
                    qq = q.where(
                        H.expiration >= last[0], or_(H.expiration > last[0], H.hit_id > last[1])
                    )
                rows = s.execute(qq.limit(min(batch, budget))).all()
                budget -= len(rows)
                for row in rows:
                    # Re-asks have a HIT type each, alike but for their DoesNotExist lists,
                    # which the query has already checked: one check per remaining set.
                    key = repr(
                        [
                            r
                            for r in row.qualification_requirements or []
                            if r.get("Comparator") != "DoesNotExist"
                        ]
                    )
                    if key not in quals:
                        quals[key] = self._quals_ok(
                            s, worker_id, row.qualification_requirements, absent_checked=True
                        )
                    if not quals[key]:
                        continue
                    if skipped < offset:
                        skipped += 1
                        continue
                    out.append(
                        {
                            "hit_id": row.hit_id,
                            "title": row.title,
                            "description": row.description,
                            "reward": row.reward,
                            "available": row.max_assignments,
                            "expiration": row.expiration,
                            "duration": row.assignment_duration,
                        }
                    )
                    if len(out) >= limit:
                        break
                if len(rows) < batch:
                    break
                last = (rows[-1].expiration, rows[-1].hit_id)
            # Free slots of the page's HITs only: one grouped read over their assignments.
            counts = self.store._counts(s, [r["hit_id"] for r in out], now)
            for r in out:
                c = counts[r["hit_id"]]
                r["available"] -= c.get("Pending", 0) + sum(c.get(k, 0) for k in DONE)
        return out

    def hit_summary(self, hit_id: str) -> dict[str, Any]:
        with self.store.Session() as s:
            hit = self.store._hit(s, hit_id)
            ht = s.get(SandboxHitType, hit.hit_type_id)
            assert ht is not None
            return {
                "hit_id": hit.hit_id,
                "title": ht.title,
                "description": ht.description,
                "reward": ht.reward,
                "status": hit.status,
                "expiration": hit.expiration,
                "duration": ht.assignment_duration,
            }

    def accept(self, hit_id: str, worker_id: str) -> dict[str, Any]:
        now = time.time()
        with self.store.Session() as s:
            try:
                hit = self.store._hit(s, hit_id, lock=True)
            except MTurkError as e:
                raise WorkError(404, e.message) from None
            ht = s.get(SandboxHitType, hit.hit_type_id)
            assert ht is not None
            if s.get(SandboxWorkerBlock, worker_id) is not None:
                raise WorkError(403, "You are blocked from working on this requester's HITs.")
            if hit.status != "Assignable" or hit.expiration <= now:
                raise WorkError(410, "This HIT is no longer available (expired or withdrawn).")
            if not self._quals_ok(s, worker_id, ht.qualification_requirements):
                raise WorkError(403, "You do not meet the qualification requirements of this HIT.")
            c = self.store._counts(s, [hit.hit_id], now)[hit.hit_id]
            mine = s.scalars(
                select(SandboxAssignment).where(
                    SandboxAssignment.hit_id == hit.hit_id, SandboxAssignment.worker_id == worker_id
                )
            ).first()
            if mine is not None:
                raise WorkError(
                    409, f"You already have assignment {mine.assignment_id} ({mine.status})."
                )
            if c.get("Pending", 0) + sum(c.get(k, 0) for k in DONE) >= hit.max_assignments:
                raise WorkError(409, "All assignments of this HIT are taken.")
            # Slots freed by abandoned or returned assignments are reused: those rows stay, so the
            # worker unique key (hit, worker) still says who held them.
            a = SandboxAssignment(
                assignment_id=new_id(),
                hit_id=hit.hit_id,
                worker_id=worker_id,
                status="Accepted",
                accept_time=now,
                deadline=min(now + ht.assignment_duration, hit.expiration + ht.assignment_duration),
            )
            s.add(a)
            try:
                self.store._sync(s, hit.hit_id, now)
                s.commit()
            except IntegrityError:
                s.rollback()
                raise WorkError(409, "You already accepted this HIT.") from None
            return {"assignment_id": a.assignment_id, "hit_id": hit.hit_id, "deadline": a.deadline}

    def assignment(self, assignment_id: str, worker_id: str) -> dict[str, Any]:
        with self.store.Session() as s:
            a = s.get(SandboxAssignment, assignment_id)
            if a is None:
                raise WorkError(404, f"Unknown assignment {assignment_id}.")
            if a.worker_id != worker_id:
                raise WorkError(403, "This assignment belongs to another worker.")
            return {
                "assignment_id": a.assignment_id,
                "hit_id": a.hit_id,
                "status": a.status,
                "deadline": a.deadline,
            }

    def form_fields(self, hit_id: str, question: str) -> frozenset[str]:
        from mturk.layout import form_field_names, html_from_question

        got = self._fields.get(hit_id)
        if got is None:
            got = frozenset(form_field_names(html_from_question(question)))
            self._fields[hit_id] = got
            if len(self._fields) > 2048:
                self._fields.popitem(last=False)
        return got

    def submit(
        self, assignment_id: str, worker_id: str, fields: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        """Store the answer as QuestionFormAnswers XML; refuse anything MTurk would not accept."""
        from mturk.answers import answers_xml

        now = time.time()
        if assignment_id == "ASSIGNMENT_ID_NOT_AVAILABLE":
            raise WorkError(400, "This is a preview: accept the HIT before submitting.")
        with self.store.Session() as s:
            a = s.get(SandboxAssignment, assignment_id)
            if a is None:
                raise WorkError(404, f"Unknown assignment {assignment_id[:64]!r}.")
            if self.store.pg:
                s.refresh(a, with_for_update=True)
            if a.worker_id != worker_id:
                raise WorkError(403, "This assignment belongs to another worker.")
            if a.status != "Accepted":
                raise WorkError(409, f"This assignment was already {a.status.lower()}.")
            if now > a.deadline:
                raise WorkError(
                    409, "The time allotted for this assignment has passed; it was not submitted."
                )
            hit = s.get(SandboxHit, a.hit_id)
            assert hit is not None
            if hit.status == "Disposed":
                raise WorkError(410, "This HIT was deleted by the requester.")
            allowed = self.form_fields(hit.hit_id, hit.question) - {"assignmentId"}
            names = [n for n, _v in fields]
            unknown = sorted({n for n in names if n not in allowed})
            if unknown:
                shown = ", ".join(repr(u[:40]) for u in unknown[:5])
                raise WorkError(400, f"The answer names fields this HIT does not have: {shown}.")
            for n, v in fields:
                if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in n + v):
                    raise WorkError(400, "The answer contains control characters.")
            ht = s.get(SandboxHitType, hit.hit_type_id)
            assert ht is not None
            a.answer = answers_xml(fields)
            a.status = "Submitted"
            a.submit_time = now
            a.auto_approval_time = now + ht.auto_approval_delay
            self.store._sync(s, hit.hit_id, now)
            s.commit()
            return {"assignment_id": a.assignment_id, "hit_id": a.hit_id}

    def give_back(self, assignment_id: str, worker_id: str) -> None:
        with self.store.Session() as s:
            a = s.get(SandboxAssignment, assignment_id)
            if a is None or a.worker_id != worker_id:
                raise WorkError(404, "No such assignment of yours.")
            if a.status != "Accepted":
                raise WorkError(409, f"This assignment was already {a.status.lower()}.")
            a.status = "Returned"
            self.store._sync(s, a.hit_id, time.time())
            s.commit()
