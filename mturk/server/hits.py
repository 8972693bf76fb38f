"""Requester operations that create or change HITs and assignments (part of the server's Store)."""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from mturk.fees import assignment_cost
from mturk.server.common import (
    MTurkError,
    excluding,
    gate_of,
    is_system_qual,
    new_id,
    parse_money,
)
from mturk.server.models import (
    SandboxGate,
    SandboxHit,
    SandboxHitType,
    SandboxHitTypeExclusion,
    SandboxQualificationType,
    SandboxRequestToken,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


class HitWriteMixin:
    """Mixed into Store (mturk/server/store.py); relies on its session and helper methods."""

    Session: sessionmaker[Session]
    _hit: Any
    _assignment: Any
    _counts: Any
    _sync: Any
    _status: Any
    _hit_dict: Any
    _token: Any
    _remember: Any
    _charge: Any
    _commit: Any

    def create_hit_type(self, p: dict) -> dict:
        for key in ("AssignmentDurationInSeconds", "Reward", "Title", "Description"):
            if key not in p:
                raise MTurkError("AWS.MissingParameters", f"{key} is required")
        parse_money(p["Reward"], "Reward")
        duration = int(p["AssignmentDurationInSeconds"])
        if not 30 <= duration <= 31536000:
            raise MTurkError("AWS.ParameterOutOfRange", "AssignmentDurationInSeconds out of range")
        quals = p.get("QualificationRequirements") or []
        with self.Session() as s:
            for q in quals:
                values = q.get("IntegerValues") or []
                if q.get("Comparator") in ("In", "NotIn") and not 1 <= len(values) <= 15:
                    raise MTurkError(
                        "AWS.ParameterOutOfRange",
                        "In and NotIn compare against 1 to 15 IntegerValues",
                    )
                qid = str(q.get("QualificationTypeId", ""))
                if not is_system_qual(qid) and s.get(SandboxQualificationType, qid) is None:
                    raise MTurkError(
                        "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
                        f"Qualification type {qid} does not exist.",
                    )
            # Same parameters -> same HIT type, as on MTurk.
            key = json.dumps(
                [
                    p["Title"],
                    p["Description"],
                    p.get("Keywords"),
                    str(p["Reward"]),
                    duration,
                    int(p.get("AutoApprovalDelayInSeconds", 2592000)),
                    quals,
                ],
                sort_keys=True,
            )
            htid = "3" + hashlib.sha256(key.encode()).hexdigest().upper()[:29]
            gate = gate_of(quals)
            if gate is not None and s.get(SandboxGate, gate) is None:
                # Its own transaction: a concurrent type with the same gate may add it first.
                s.add(SandboxGate(gate=gate))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
            if s.get(SandboxHitType, htid) is None:
                s.add(
                    SandboxHitType(
                        hit_type_id=htid,
                        title=p["Title"],
                        description=p["Description"],
                        keywords=p.get("Keywords"),
                        reward=str(p["Reward"]),
                        assignment_duration=duration,
                        auto_approval_delay=int(p.get("AutoApprovalDelayInSeconds", 2592000)),
                        qualification_requirements=quals,
                        gate=gate,
                    )
                )
                s.add_all(
                    SandboxHitTypeExclusion(hit_type_id=htid, qualification_type_id=qid)
                    for qid in excluding(quals)
                )
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
        return {"HITTypeId": htid}

    def create_hit(self, p: dict, op: str = "CreateHITWithHITType") -> dict:
        if op == "CreateHIT":
            # Check the HIT's own parameters and token first: a refused call leaves no HIT type.
            self._check_hit(p, "")
            with self.Session() as s:
                self._token(s, p.get("UniqueRequestToken"), op)  # read only: rolled back
            p = {**p, **self.create_hit_type(p)}
        max_a, lifetime = self._check_hit(p, p.get("HITTypeId"))
        token = p.get("UniqueRequestToken")
        now = time.time()
        with self.Session() as s:
            ht = s.get(SandboxHitType, str(p["HITTypeId"]))
            if ht is None:
                raise MTurkError(
                    "AWS.MechanicalTurk.HITTypeDoesNotExist", f"HIT type {p['HITTypeId']} unknown"
                )
            self._token(s, token, op)
            hit = SandboxHit(
                hit_id=new_id(),
                hit_type_id=ht.hit_type_id,
                question=str(p["Question"]),
                max_assignments=max_a,
                expiration=now + lifetime,
                requester_annotation=p.get("RequesterAnnotation"),
                created_at=now,
                n_done=0,
                is_open=True,
                reviewable_at=now + lifetime,
                gate=ht.gate,
            )
            s.add(hit)
            self._remember(s, token, op, hit.hit_id)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                old = s.get(SandboxRequestToken, token) if token else None
                raise MTurkError(
                    "AWS.MechanicalTurk.HitAlreadyExists",
                    f"There is already a HIT which exists with the same UniqueRequestToken: "
                    f"{token} (HITId: {old.result_id if old else '?'})",
                ) from None
            return {"HIT": self._hit_dict(s, hit, {}, now)}

    def _check_hit(self, p: dict, hit_type_id: Any) -> tuple[int, int]:
        """(MaxAssignments, LifetimeInSeconds) of a HIT request, or MTurkError."""
        if hit_type_id is None or "LifetimeInSeconds" not in p:
            raise MTurkError(
                "AWS.MissingParameters", "HITTypeId and LifetimeInSeconds are required"
            )
        if not p.get("Question"):
            raise MTurkError(
                "AWS.MissingParameters", "Question is required (HITLayoutId unsupported)"
            )
        from mturk.layout import html_from_question

        try:
            html_from_question(str(p["Question"]))
        except ValueError as e:
            raise MTurkError("AWS.MechanicalTurk.XMLParseError", str(e)) from None
        max_a = int(p.get("MaxAssignments", 1))
        lifetime = int(p["LifetimeInSeconds"])
        if not 1 <= max_a <= 1_000_000:
            raise MTurkError("AWS.ParameterOutOfRange", "MaxAssignments must be 1..1000000")
        if not 30 <= lifetime <= 31536000:
            raise MTurkError("AWS.ParameterOutOfRange", "LifetimeInSeconds must be 30..31536000")
        return max_a, lifetime

    def review(self, p: dict, approve: bool) -> dict:
        now = time.time()
        feedback = p.get("RequesterFeedback")
        if not approve and not feedback:
            raise MTurkError("AWS.MissingParameters", "RequesterFeedback is required to reject")
        if feedback is not None and len(feedback) > 1024:
            raise MTurkError("AWS.ParameterOutOfRange", "RequesterFeedback is over 1024 chars")
        with self.Session() as s:
            a = self._assignment(s, p.get("AssignmentId", ""), lock=True)
            override = approve and bool(p.get("OverrideRejection")) and a.status == "Rejected"
            if a.status != "Submitted" and not override:
                raise MTurkError(
                    "AWS.MechanicalTurk.InvalidAssignmentState",
                    f"This operation can be called with a status of: Submitted "
                    f"(assignment {a.assignment_id} is {a.status})",
                )
            hit = self._hit(s, a.hit_id)
            if approve:
                ht = s.get(SandboxHitType, hit.hit_type_id)
                assert ht is not None
                reward = Decimal(ht.reward)
                self._charge(s, assignment_cost(reward, hit.max_assignments))
                a.status, a.approval_time = "Approved", now
            else:
                a.status, a.rejection_time = "Rejected", now
            a.requester_feedback = feedback
            self._sync(s, hit.hit_id, now)
            s.commit()
        return {}

    def create_additional_assignments(self, p: dict) -> dict:
        n = int(p.get("NumberOfAdditionalAssignments", 0))
        if n < 1:
            raise MTurkError(
                "AWS.ParameterOutOfRange", "NumberOfAdditionalAssignments must be >= 1"
            )
        token = p.get("UniqueRequestToken")
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""), lock=True)
            if hit.status == "Disposed":
                raise MTurkError("AWS.MechanicalTurk.InvalidHITState", "The HIT was deleted.")
            if hit.max_assignments < 10 <= hit.max_assignments + n:
                raise MTurkError(
                    "AWS.ParameterOutOfRange",
                    "HITs created with fewer than 10 assignments cannot be extended to 10 or more.",
                )
            self._token(s, token, "CreateAdditionalAssignmentsForHIT")
            hit.max_assignments += n
            self._sync(s, hit.hit_id, time.time())
            self._remember(s, token, "CreateAdditionalAssignmentsForHIT", hit.hit_id)
            self._commit(s)
        return {}

    def update_expiration(self, p: dict) -> dict:
        if "ExpireAt" not in p:
            raise MTurkError("AWS.MissingParameters", "ExpireAt is required")
        at = float(p["ExpireAt"])
        now = time.time()
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""), lock=True)
            if hit.status == "Disposed":
                raise MTurkError("AWS.MechanicalTurk.InvalidHITState", "The HIT was deleted.")
            # A time in the past expires the HIT now, as MTurk does.
            hit.expiration = max(min(at, now + 31536000), now) if at > now else now
            self._sync(s, hit.hit_id, now)
            s.commit()
        return {}

    def delete_hit(self, p: dict) -> dict:
        now = time.time()
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""), lock=True)
            c = self._counts(s, [hit.hit_id], now)[hit.hit_id]
            status = self._status(hit, c, now)[0]
            if status == "Disposed":
                return {}
            if status not in ("Reviewable", "Reviewing") or c.get("Submitted") or c.get("Pending"):
                raise MTurkError(
                    "AWS.MechanicalTurk.InvalidHITState",
                    f"This HIT is currently in the state '{status}' with "
                    f"{c.get('Submitted', 0)} unreviewed assignment(s). This operation can be "
                    "called with a status of: Reviewable, Reviewing (all assignments reviewed).",
                )
            hit.status = "Disposed"
            self._sync(s, hit.hit_id, now)
            s.commit()
        return {}

    def update_review_status(self, p: dict) -> dict:
        with self.Session() as s:
            hit = self._hit(s, p.get("HITId", ""), lock=True)
            if hit.status != "Disposed":
                hit.status = "Assignable" if p.get("Revert") else "Reviewing"
                self._sync(s, hit.hit_id, time.time())
            s.commit()
        return {}
