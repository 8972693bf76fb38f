"""Requester operations on workers: qualifications, blocks, bonuses and notifications."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mturk.server.common import MTurkError, new_id, parse_money
from mturk.server.models import (
    SandboxAssignment,
    SandboxBonus,
    SandboxNotification,
    SandboxQualificationType,
    SandboxWorkerBlock,
    SandboxWorkerQualification,
)
from mturk.server.paging import offset_page

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


class WorkerAdminMixin:
    """Part of Store (mturk/server/store.py); relies on its session and helper methods."""

    Session: sessionmaker[Session]
    _assignment: Any
    _token: Any
    _charge: Any
    _remember: Any
    _commit: Any

    def create_qualification_type(self, p: dict) -> dict:
        for key in ("Name", "Description", "QualificationTypeStatus"):
            if key not in p:
                raise MTurkError("AWS.MissingParameters", f"{key} is required")
        with self.Session() as s:
            if s.scalars(
                select(SandboxQualificationType).where(SandboxQualificationType.name == p["Name"])
            ).first():
                raise MTurkError(
                    "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
                    f"You have already created a QualificationType with this name: {p['Name']}",
                )
            q = SandboxQualificationType(
                qualification_type_id=new_id(),
                name=p["Name"],
                description=p["Description"],
                keywords=p.get("Keywords"),
                status=p["QualificationTypeStatus"],
                auto_granted=bool(p.get("AutoGranted", False)),
                auto_granted_value=p.get("AutoGrantedValue"),
            )
            s.add(q)
            self._commit(s)
            return {"QualificationType": _qual_dict(q)}

    def list_qualification_types(self, p: dict) -> dict:
        size, offset = offset_page(p)
        with self.Session() as s:
            q = select(SandboxQualificationType).order_by(SandboxQualificationType.created_at)
            if p.get("Query"):
                q = q.where(SandboxQualificationType.name.contains(p["Query"]))
            rows = list(s.scalars(q.offset(offset).limit(size)))
        out: dict[str, Any] = {
            "NumResults": len(rows),
            "QualificationTypes": [_qual_dict(q) for q in rows],
        }
        if len(rows) == size:
            out["NextToken"] = str(offset + size)
        return out

    def associate_qualification(self, p: dict, grant: bool = True) -> dict:
        qid, worker = str(p.get("QualificationTypeId", "")), str(p.get("WorkerId", ""))
        if not worker:
            raise MTurkError("AWS.MissingParameters", "WorkerId is required")
        with self.Session() as s:
            if s.get(SandboxQualificationType, qid) is None:
                raise MTurkError(
                    "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
                    f"Qualification type {qid} does not exist.",
                )
            wq = s.get(SandboxWorkerQualification, (qid, worker))
            if wq is None:
                if not grant:
                    raise MTurkError(
                        "AWS.MechanicalTurk.QualificationDoesNotExist",
                        f"Worker {worker} does not have qualification {qid}.",
                    )
                wq = SandboxWorkerQualification(qualification_type_id=qid, worker_id=worker)
                s.add(wq)
            wq.integer_value = int(p.get("IntegerValue", 1))
            wq.status = "Granted" if grant else "Revoked"
            wq.grant_time = time.time()
            self._commit(s)
        return {}

    def list_workers_with_qualification(self, p: dict) -> dict:
        size, offset = offset_page(p)
        W = SandboxWorkerQualification
        with self.Session() as s:
            q = select(W).where(W.qualification_type_id == p.get("QualificationTypeId", ""))
            if p.get("Status"):
                q = q.where(W.status == p["Status"])
            rows = list(s.scalars(q.order_by(W.worker_id).offset(offset).limit(size)))
        out: dict[str, Any] = {
            "NumResults": len(rows),
            "Qualifications": [
                {
                    "QualificationTypeId": w.qualification_type_id,
                    "WorkerId": w.worker_id,
                    "GrantTime": w.grant_time,
                    "IntegerValue": w.integer_value,
                    "Status": w.status,
                }
                for w in rows
            ],
        }
        if len(rows) == size:
            out["NextToken"] = str(offset + size)
        return out

    def block_worker(self, p: dict, block: bool = True) -> dict:
        worker = str(p.get("WorkerId", ""))
        if not worker or (block and not p.get("Reason")):
            raise MTurkError("AWS.MissingParameters", "WorkerId and Reason are required")
        with self.Session() as s:
            old = s.get(SandboxWorkerBlock, worker)
            if block and old is None:
                s.add(SandboxWorkerBlock(worker_id=worker, reason=str(p["Reason"])))
            elif not block and old is not None:
                s.delete(old)
            self._commit(s)
        return {}

    def list_worker_blocks(self, p: dict) -> dict:
        size, offset = offset_page(p)
        with self.Session() as s:
            rows = list(
                s.scalars(
                    select(SandboxWorkerBlock)
                    .order_by(SandboxWorkerBlock.worker_id)
                    .offset(offset)
                    .limit(size)
                )
            )
        out: dict[str, Any] = {
            "NumResults": len(rows),
            "WorkerBlocks": [{"WorkerId": b.worker_id, "Reason": b.reason} for b in rows],
        }
        if len(rows) == size:
            out["NextToken"] = str(offset + size)
        return out

    def send_bonus(self, p: dict) -> dict:
        for key in ("WorkerId", "BonusAmount", "AssignmentId", "Reason"):
            if not p.get(key):
                raise MTurkError("AWS.MissingParameters", f"{key} is required")
        amount = parse_money(p["BonusAmount"], "BonusAmount")
        if amount <= 0:
            raise MTurkError("AWS.ParameterOutOfRange", "BonusAmount must be positive")
        token = p.get("UniqueRequestToken")
        with self.Session() as s:
            a = self._assignment(s, p["AssignmentId"])
            if a.worker_id != p["WorkerId"]:
                raise MTurkError(
                    "AWS.ParameterOutOfRange",
                    f"Assignment {a.assignment_id} was not done by worker {p['WorkerId']}.",
                )
            if a.status not in ("Approved", "Rejected", "Submitted"):
                raise MTurkError(
                    "AWS.MechanicalTurk.InvalidAssignmentState",
                    f"Assignment {a.assignment_id} is {a.status}; bonuses need a submitted one.",
                )
            self._token(s, token, "SendBonus")
            self._charge(s, amount + amount * Decimal("0.20"))
            s.add(
                SandboxBonus(
                    worker_id=a.worker_id,
                    assignment_id=a.assignment_id,
                    amount=str(amount),
                    reason=str(p["Reason"]),
                )
            )
            self._remember(s, token, "SendBonus", a.assignment_id)
            self._commit(s)
        return {}

    def list_bonus_payments(self, p: dict) -> dict:
        size, offset = offset_page(p)
        B = SandboxBonus
        with self.Session() as s:
            q = select(B)
            if p.get("AssignmentId"):
                q = q.where(B.assignment_id == p["AssignmentId"])
            elif p.get("HITId"):
                ids = select(SandboxAssignment.assignment_id).where(
                    SandboxAssignment.hit_id == p["HITId"]
                )
                q = q.where(B.assignment_id.in_(ids))
            rows = list(s.scalars(q.order_by(B.id).offset(offset).limit(size)))
        out: dict[str, Any] = {
            "NumResults": len(rows),
            "BonusPayments": [
                {
                    "WorkerId": b.worker_id,
                    "BonusAmount": b.amount,
                    "AssignmentId": b.assignment_id,
                    "Reason": b.reason,
                    "GrantTime": b.created_at,
                }
                for b in rows
            ],
        }
        if len(rows) == size:
            out["NextToken"] = str(offset + size)
        return out

    def notify_workers(self, p: dict) -> dict:
        ids = p.get("WorkerIds") or []
        if not p.get("Subject") or not p.get("MessageText") or not ids:
            raise MTurkError("AWS.MissingParameters", "Subject, MessageText, WorkerIds required")
        if len(ids) > 100:
            raise MTurkError("AWS.ParameterOutOfRange", "at most 100 WorkerIds per call")
        failures = []
        with self.Session() as s:
            known = set(
                s.scalars(
                    select(SandboxAssignment.worker_id).where(SandboxAssignment.worker_id.in_(ids))
                )
            )
            for w in ids:
                if w not in known:
                    failures.append(
                        {
                            "NotifyWorkersFailureCode": "HardFailure",
                            "NotifyWorkersFailureMessage": f"Worker {w} has never worked for you.",
                            "WorkerId": w,
                        }
                    )
                    continue
                s.add(
                    SandboxNotification(worker_id=w, subject=p["Subject"], message=p["MessageText"])
                )
            s.commit()
        return {"NotifyWorkersFailureStatuses": failures}


def _qual_dict(q: SandboxQualificationType) -> dict:
    d: dict[str, Any] = {
        "QualificationTypeId": q.qualification_type_id,
        "CreationTime": q.created_at,
        "Name": q.name,
        "Description": q.description,
        "QualificationTypeStatus": q.status,
        "IsRequestable": False,
        "AutoGranted": q.auto_granted,
    }
    if q.keywords:
        d["Keywords"] = q.keywords
    if q.auto_granted_value is not None:
        d["AutoGrantedValue"] = q.auto_granted_value
    return d
