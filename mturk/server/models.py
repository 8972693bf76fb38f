"""Typed models of the self-hosted MTurk-compatible server's sandbox_* tables (own Alembic branch).

Only where the server runs: a deployment on real MTurk has none of these tables. They have their
own metadata and migrations (mturk/server/migrations, version table alembic_version_server), so
the core schema (db/models.py) neither creates nor compares them. One database may hold both
sides, and the server survives a restart: all its state is here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.models import NAMING_CONVENTION, BigIntPK, now


class ServerBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SandboxAccount(ServerBase):
    __tablename__ = "sandbox_account"
    access_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Decimal strings as MTurk reports them ("10000.00").
    available_balance: Mapped[str] = mapped_column(String(32), default="10000.00")
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxHitType(ServerBase):
    __tablename__ = "sandbox_hit_type"
    hit_type_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    keywords: Mapped[str | None] = mapped_column(Text)
    reward: Mapped[str] = mapped_column(String(16))
    assignment_duration: Mapped[int] = mapped_column(Integer)
    auto_approval_delay: Mapped[int] = mapped_column(Integer, default=2592000)
    qualification_requirements: Mapped[list[Any] | None] = mapped_column(JSON)
    # Its `Exists` requirements as a gate key (None: none), copied onto its HITs.
    gate: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxHitTypeExclusion(ServerBase):
    """One row per `DoesNotExist` requirement of a HIT type: the worker poll excludes the HIT
    types whose excluding qualification the worker holds in SQL, so a crowd's re-asks (one HIT
    type each, closed to their voters) cannot fill a page's scan with HITs the worker may not
    take."""

    __tablename__ = "sandbox_hit_type_exclusion"
    hit_type_id: Mapped[str] = mapped_column(
        ForeignKey("sandbox_hit_type.hit_type_id"), primary_key=True
    )
    qualification_type_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class SandboxGate(ServerBase):
    """Each distinct gate (a HIT type's `Exists` requirements, sorted ids joined by commas): a
    handful of rows, read by every worker poll to tell which gates the worker passes."""

    __tablename__ = "sandbox_gate"
    gate: Mapped[str] = mapped_column(String(256), primary_key=True)


class SandboxHit(ServerBase):
    __tablename__ = "sandbox_hit"
    hit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_type_id: Mapped[str] = mapped_column(ForeignKey("sandbox_hit_type.hit_type_id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    max_assignments: Mapped[int] = mapped_column(Integer, default=1)
    expiration: Mapped[float] = mapped_column(Float, index=True)
    # Assignable unless Disposed (deleted) or Reviewing; the rest is derived from assignments.
    status: Mapped[str] = mapped_column(String(16), default="Assignable")
    review_status: Mapped[str] = mapped_column(String(32), default="NotReviewed")
    requester_annotation: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)
    # Derived from the HIT's assignments and kept in step by Store._sync in the transaction of
    # every change, so that listings and worker polls are index range scans, not recounts.
    # n_done: Submitted/Approved/Rejected ones (they hold a slot for good).
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    # Latest deadline of an Accepted one: the HIT has pending work while it is in the future.
    pending_until: Mapped[float | None] = mapped_column(Float)
    # Until when Accepted ones fill every slot not done (None: a slot is free now).
    full_until: Mapped[float | None] = mapped_column(Float)
    # When it became, or will become, Reviewable unless something changes; the keyset order of
    # ListReviewableHITs, so new reviewable HITs come after those already listed.
    reviewable_at: Mapped[float] = mapped_column(Float)
    # Status Assignable with a slot not done: the worker poll's set (expiration checked apart).
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    # Its HIT type's gate: a worker lacking a gate's qualification polls the gates they pass by
    # index (a new worker finds the warm-up pages, mturk/warmup.py, past thousands of HITs
    # for warmed-up workers without reading them).
    gate: Mapped[str | None] = mapped_column(String(256))
    __table_args__ = (
        Index("ix_sandbox_hit_status_reviewable_at", "status", "reviewable_at", "hit_id"),
        Index(
            "ix_sandbox_hit_type_status_reviewable_at",
            "hit_type_id",
            "status",
            "reviewable_at",
            "hit_id",
        ),
        Index("ix_sandbox_hit_status_created_at", "status", "created_at", "hit_id"),
        Index("ix_sandbox_hit_is_open_expiration", "is_open", "expiration", "hit_id"),
        Index("ix_sandbox_hit_gate_is_open_expiration", "gate", "is_open", "expiration", "hit_id"),
    )


class SandboxAssignment(ServerBase):
    __tablename__ = "sandbox_assignment"
    # One assignment per worker per HIT, as on MTurk.
    __table_args__ = (UniqueConstraint("hit_id", "worker_id"),)
    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_id: Mapped[str] = mapped_column(ForeignKey("sandbox_hit.hit_id"), index=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    # Accepted | Submitted | Approved | Rejected | Returned | Abandoned
    status: Mapped[str] = mapped_column(String(16), default="Accepted")
    accept_time: Mapped[float] = mapped_column(Float, default=now)
    deadline: Mapped[float] = mapped_column(Float)
    submit_time: Mapped[float | None] = mapped_column(Float)
    auto_approval_time: Mapped[float | None] = mapped_column(Float)
    approval_time: Mapped[float | None] = mapped_column(Float)
    rejection_time: Mapped[float | None] = mapped_column(Float)
    answer: Mapped[str | None] = mapped_column(Text)
    requester_feedback: Mapped[str | None] = mapped_column(Text)


class SandboxQualificationType(ServerBase):
    __tablename__ = "sandbox_qualification_type"
    qualification_type_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    keywords: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="Active")
    auto_granted: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_granted_value: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxWorkerQualification(ServerBase):
    __tablename__ = "sandbox_worker_qualification"
    qualification_type_id: Mapped[str] = mapped_column(
        ForeignKey("sandbox_qualification_type.qualification_type_id"), primary_key=True
    )
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    integer_value: Mapped[int] = mapped_column(Integer, default=1)
    # Granted | Revoked
    status: Mapped[str] = mapped_column(String(16), default="Granted")
    grant_time: Mapped[float] = mapped_column(Float, default=now)


class SandboxWorkerBlock(ServerBase):
    __tablename__ = "sandbox_worker_block"
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxBonus(ServerBase):
    __tablename__ = "sandbox_bonus"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    assignment_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxNotification(ServerBase):
    __tablename__ = "sandbox_notification"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SandboxRequestToken(ServerBase):
    """UniqueRequestToken memory (MTurk keeps them 24 h): a repeat returns HitAlreadyExists."""

    __tablename__ = "sandbox_request_token"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    result_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, default=now)
