"""The self-hosted server's state machine over the sandbox_* tables (synchronous, one call = one txn)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mturk.fees import assignment_cost
from mturk.server.admin import WorkerAdminMixin
from mturk.server.common import MTurkError, derive_hit
from mturk.server.hits import HitWriteMixin
from mturk.server.models import (
    SandboxAccount,
    SandboxAssignment,
    SandboxHit,
    SandboxHitType,
    SandboxRequestToken,
)
from mturk.server.paging import keyset_page, keyset_token, offset_page

# Statuses that hold a slot of the HIT for good (Accepted holds one only until its deadline).
DONE = ("Submitted", "Approved", "Rejected")


class Store(HitWriteMixin, WorkerAdminMixin):
    """All server state lives in the database, so a restarted server carries on where it was."""

    def __init__(self, engine: Engine, access_key: str) -> None:
        from mturk.server.migrations import upgrade_server

        upgrade_server(engine)  # the server's own tables: created where it runs, not by the core
        self.engine = engine
        self.Session = sessionmaker(engine, expire_on_commit=False)
        self.access_key = access_key
        self.pg = engine.dialect.name == "postgresql"

    # -- helpers ----------------------------------------------------------------------------
    def _hit(self, s: Session, hit_id: str, lock: bool = False) -> SandboxHit:
        q = select(SandboxHit).where(SandboxHit.hit_id == str(hit_id))
        if lock and self.pg:
            q = q.with_for_update()
        hit = s.scalars(q).first()
        if hit is None:
            raise MTurkError("AWS.MechanicalTurk.HITDoesNotExist", f"Hit {hit_id} does not exist.")
        return hit

    def _assignment(self, s: Session, aid: str, lock: bool = False) -> SandboxAssignment:
        q = select(SandboxAssignment).where(SandboxAssignment.assignment_id == str(aid))
        if lock and self.pg:
            q = q.with_for_update()
        a = s.scalars(q).first()
        if a is None:
            raise MTurkError(
                "AWS.MechanicalTurk.AssignmentDoesNotExist", f"Assignment {aid} does not exist."
            )
        return a

    def _sync(self, s: Session, hit_id: str, now: float) -> SandboxHit:
        """Recompute the HIT's derived columns from its assignments (see SandboxHit).

        Every write that changes a HIT or the status of one of its assignments calls this in
        its own transaction; the HIT row is locked first (PostgreSQL), so two writers on the
        same HIT recount one after the other and neither loses the other's change."""
        q = select(SandboxHit).where(SandboxHit.hit_id == hit_id)
        if self.pg:
            q = q.with_for_update()
        hit = s.scalars(q.execution_options(populate_existing=True)).one()
        A = SandboxAssignment
        rows = s.execute(
            select(A.status, A.deadline).where(
                A.hit_id == hit_id, A.status.in_(("Accepted", *DONE))
            )
        ).all()
        n_done = sum(1 for st, _d in rows if st in DONE)
        got = derive_hit(
            hit.status,
            hit.max_assignments,
            hit.expiration,
            n_done,
            [d for st, d in rows if st == "Accepted"],
            hit.reviewable_at,
            now,
        )
        for key, val in got.items():
            setattr(hit, key, val)
        return hit

    def _counts(self, s: Session, hit_ids: Iterable[str], now: float) -> dict[str, dict[str, int]]:
        ids = list(hit_ids)
        out: dict[str, dict[str, int]] = {h: {} for h in ids}
        if not ids:
            return out
        A = SandboxAssignment
        # Live (before its deadline) Accepted ones are summed rather than grouped on, so the
        # statement has no inlined time and its compiled form is cached.
        n_live = func.sum(case((A.deadline > now, 1), else_=0))
        for i in range(0, len(ids), 500):
            rows = s.execute(
                select(A.hit_id, A.status, func.count(), n_live)
                .where(A.hit_id.in_(ids[i : i + 500]))
                .group_by(A.hit_id, A.status)
            )
            for hit_id, status, n, live in rows:
                c = out[hit_id]
                if status == "Accepted" and live:
                    c["Pending"] = c.get("Pending", 0) + int(live)
                    n -= int(live)
                if n:
                    c[status] = c.get(status, 0) + n
        return out

    @staticmethod
    def _status(hit: SandboxHit, c: dict[str, int], now: float) -> tuple[str, int, int, int]:
        pending = c.get("Pending", 0)
        done = sum(c.get(k, 0) for k in DONE)
        available = max(0, hit.max_assignments - pending - done)
        if hit.status in ("Disposed", "Reviewing"):
            return hit.status, pending, 0, done
        if done >= hit.max_assignments:
            return "Reviewable", pending, 0, done
        if hit.expiration <= now:
            return ("Unassignable" if pending else "Reviewable"), pending, 0, done
        if available == 0:
            return "Unassignable", pending, 0, done
        return "Assignable", pending, available, done

    def _hit_dict(
        self,
        s: Session,
        hit: SandboxHit,
        c: dict[str, int],
        now: float,
        types: dict[str, SandboxHitType] | None = None,
    ) -> dict:
        # The session only holds objects weakly: a page passes `types` so its HIT type is read
        # once, not once per HIT.
        ht = types.get(hit.hit_type_id) if types is not None else None
        if ht is None:
            ht = s.get(SandboxHitType, hit.hit_type_id)
            assert ht is not None
            if types is not None:
                types[hit.hit_type_id] = ht
        status, pending, available, _done = self._status(hit, c, now)
        d: dict[str, Any] = {
            "HITId": hit.hit_id,
            "HITTypeId": hit.hit_type_id,
            "HITGroupId": hit.hit_type_id,
            "CreationTime": hit.created_at,
            "Title": ht.title,
            "Description": ht.description,
            "Question": hit.question,
            "HITStatus": status,
            "MaxAssignments": hit.max_assignments,
            "Reward": ht.reward,
            "AutoApprovalDelayInSeconds": ht.auto_approval_delay,
            "Expiration": hit.expiration,
            "AssignmentDurationInSeconds": ht.assignment_duration,
            "QualificationRequirements": ht.qualification_requirements or [],
            "HITReviewStatus": hit.review_status,
            "NumberOfAssignmentsPending": pending,
            "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsCompleted": c.get("Approved", 0) + c.get("Rejected", 0),
        }
        if ht.keywords:
            d["Keywords"] = ht.keywords
        if hit.requester_annotation:
            d["RequesterAnnotation"] = hit.requester_annotation
        return d

    @staticmethod
    def _assignment_dict(a: SandboxAssignment) -> dict:
        d: dict[str, Any] = {
            "AssignmentId": a.assignment_id,
            "WorkerId": a.worker_id,
            "HITId": a.hit_id,
            "AssignmentStatus": a.status,
            "AcceptTime": a.accept_time,
            "Deadline": a.deadline,
        }
        for key, val in (
            ("SubmitTime", a.submit_time),
            ("AutoApprovalTime", a.auto_approval_time),
            ("ApprovalTime", a.approval_time),
            ("RejectionTime", a.rejection_time),
            ("Answer", a.answer),
            ("RequesterFeedback", a.requester_feedback),
        ):
            if val is not None:
                d[key] = val
        return d

    def _auto_approve(self, s: Session, now: float, hit_id: str | None = None) -> None:
        """MTurk approves a submitted assignment by itself once its auto-approval time passes
        (and pays for it like any approval)."""
        A = SandboxAssignment
        q = select(A).where(A.status == "Submitted", A.auto_approval_time <= now)
        if hit_id is not None:
            q = q.where(A.hit_id == hit_id)
        for a in s.scalars(q):
            hit = s.get(SandboxHit, a.hit_id)
            ht = s.get(SandboxHitType, hit.hit_type_id) if hit is not None else None
            if hit is None or ht is None:
                continue
            reward = Decimal(ht.reward)
            try:
                self._charge(s, assignment_cost(reward, hit.max_assignments))
            except MTurkError:
                continue  # no funds: it stays Submitted until the requester pays or reviews
            a.status, a.approval_time = "Approved", now

    def _token(self, s: Session, token: str | None, op: str) -> None:
        if token is None:
            return
        if not (1 <= len(token) <= 64):
            raise MTurkError("AWS.ParameterOutOfRange", "UniqueRequestToken must be 1-64 chars")
        old = s.get(SandboxRequestToken, token)
        if old is not None and old.created_at > time.time() - 24 * 3600:
            if op in ("CreateHIT", "CreateHITWithHITType"):
                raise MTurkError(
                    "AWS.MechanicalTurk.HitAlreadyExists",
                    f"There is already a HIT which exists with the same UniqueRequestToken: "
                    f"{token} (HITId: {old.result_id})",
                )
            raise MTurkError(
                "AWS.MechanicalTurk.DuplicateRequest",
                f"The request with UniqueRequestToken {token} was already processed.",
            )
        if old is not None:
            s.delete(old)
            s.flush()

    def _remember(self, s: Session, token: str | None, op: str, result: str) -> None:
        if token is not None:
            s.add(SandboxRequestToken(token=token, operation=op, result_id=result))

    def _account(self, s: Session) -> SandboxAccount:
        acc = s.get(SandboxAccount, self.access_key)
        if acc is None:
            acc = SandboxAccount(access_key=self.access_key, available_balance="10000.00")
            s.add(acc)
            s.flush()
        return acc

    def _charge(self, s: Session, amount: Decimal) -> None:
        acc = self._account(s)
        bal = Decimal(acc.available_balance)
        if amount > bal:
            raise MTurkError(
                "AWS.MechanicalTurk.InsufficientFunds",
                f"This Requester has insufficient funds: {bal} available, {amount} needed.",
            )
        acc.available_balance = str((bal - amount).quantize(Decimal("0.01")))

    def _commit(self, s: Session) -> None:
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            # Two identical requests raced; the loser is told so rather than given a 500.
            raise MTurkError(
                "AWS.MechanicalTurk.DuplicateRequest", "A concurrent identical request won."
            ) from None

    # -- requester operations ---------------------------------------------------------------
    def get_hit(self, p: dict) -> dict:
        now = time.time()
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""))
            return {
                "HIT": self._hit_dict(s, hit, self._counts(s, [hit.hit_id], now)[hit.hit_id], now)
            }

    def list_hits(self, p: dict, reviewable: bool = False) -> dict:
        """ListHITs / ListReviewableHITs: keyset pages read by index range scans.

        Reviewable HITs are those whose reviewable_at has passed (status Assignable), listed in
        that order; everything else lists by (created_at, hit_id)."""
        size, after = keyset_page(p)
        now = time.time()
        H = SandboxHit
        htype = p.get("HITTypeId")
        want = (p.get("Status") or "Reviewable") if reviewable else None
        if want not in (None, "Reviewable", "Reviewing"):
            raise MTurkError("AWS.ParameterOutOfRange", "Status must be Reviewable or Reviewing")
        with self.Session() as s:
            if want == "Reviewable":
                key_col, statuses = H.reviewable_at, ["Assignable"]
            else:
                key_col = H.created_at
                statuses = ["Reviewing"] if want == "Reviewing" else ["Assignable", "Reviewing"]
            # One range scan per stored status (an IN list would lose the index order); the
            # merged head of the runs is the page.
            keyed: list[tuple[float, str]] = []
            for st in statuses:
                q = select(key_col, H.hit_id).where(H.status == st)
                if htype:
                    q = q.where(H.hit_type_id == str(htype))
                if want == "Reviewable":
                    q = q.where(H.reviewable_at <= now)
                if after is not None:
                    q = q.where(key_col >= after[0], or_(key_col > after[0], H.hit_id > after[1]))
                keyed += [
                    (k, h) for k, h in s.execute(q.order_by(key_col, H.hit_id).limit(size + 1))
                ]
            keyed.sort()
            page = keyed[:size]
            ids = [h for _k, h in page]
            by_id = {h.hit_id: h for h in s.scalars(select(H).where(H.hit_id.in_(ids)))}
            counts = self._counts(s, ids, now)
            types: dict[str, SandboxHitType] = {}
            items = [self._hit_dict(s, by_id[h], counts[h], now, types) for h in ids if h in by_id]
        out: dict[str, Any] = {"NumResults": len(items), "HITs": items}
        if len(keyed) > size:
            out["NextToken"] = keyset_token(*page[-1])
        return out

    def list_assignments(self, p: dict) -> dict:
        size, offset = offset_page(p)
        now = time.time()
        statuses = p.get("AssignmentStatuses") or list(DONE)
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""))
            self._auto_approve(s, now, hit.hit_id)
            s.commit()
            A = SandboxAssignment
            rows = list(
                s.scalars(
                    select(A)
                    .where(A.hit_id == hit.hit_id, A.status.in_(statuses))
                    .order_by(A.submit_time, A.assignment_id)
                    .offset(offset)
                    .limit(size)
                )
            )
        out: dict[str, Any] = {
            "NumResults": len(rows),
            "Assignments": [self._assignment_dict(a) for a in rows],
        }
        if len(rows) == size:
            out["NextToken"] = str(offset + size)
        return out

    def get_assignment(self, p: dict) -> dict:
        now = time.time()
        with self.Session() as s:
            a = self._assignment(s, p.get("AssignmentId", ""))
            self._auto_approve(s, now, a.hit_id)
            s.commit()
            s.refresh(a)
            hit = self._hit(s, a.hit_id)
            c = self._counts(s, [hit.hit_id], now)[hit.hit_id]
            return {"Assignment": self._assignment_dict(a), "HIT": self._hit_dict(s, hit, c, now)}

    def account_balance(self, p: dict) -> dict:
        with self.Session() as s:
            acc = self._account(s)
            s.commit()
            return {"AvailableBalance": acc.available_balance, "OnHoldBalance": "0.00"}
