"""Typed SQLAlchemy 2.0 models of the core schema, every stage's tables (DESIGN.md, "Data model").

The self-hosted MTurk server's sandbox_* tables are not here: mturk/server/models.py, own branch.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations (and batch mode on SQLite) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def now() -> float:
    """Timestamps are UNIX seconds (float): portable across SQLite and PostgreSQL, easy to compare."""
    return time.time()


def phash_to_db(h: int) -> int:
    """Store an unsigned 64-bit perceptual hash in a signed BIGINT column."""
    return h - (1 << 64) if h >= (1 << 63) else h


def phash_from_db(v: int) -> int:
    return v + (1 << 64) if v < 0 else v


class Base(DeclarativeBase):
    # Every model maps a plain Table; SQLAlchemy types __table__ as FromClause (sqlalchemy#9130).
    __table__: ClassVar[Table]
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class LeaseMixin:
    """Columns the work queue (db/queue.py) uses to hand rows to one worker at a time."""

    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[float | None] = mapped_column(Float, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Synset(Base):
    __tablename__ = "synset"
    wnid: Mapped[str] = mapped_column(String(16), primary_key=True)
    lemmas: Mapped[list[Any]] = mapped_column(JSON, default=list)
    gloss: Mapped[str] = mapped_column(Text, default="")
    parent_wnid: Mapped[str | None] = mapped_column(String(16), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    is_leaf: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Query(LeaseMixin, Base):
    __tablename__ = "query"
    __table_args__ = (
        UniqueConstraint("wnid", "text", "lang", "source"),
        # The work queue's two claim scans (db/queue.py): pending by id, expired by lease end.
        Index("ix_query_status_id", "status", "id"),
        Index("ix_query_status_lease_until", "status", "lease_until"),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    wnid: Mapped[str] = mapped_column(ForeignKey("synset.wnid"), index=True)
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(16), default="en")
    source: Mapped[str] = mapped_column(String(32))
    # Opaque paging cursor of the source; NULL before the first page.
    next_page: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    n_results: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class Image(Base):
    __tablename__ = "image"
    # Partial indexes over the images the curate scan still has to do (small once curated): a
    # claim reads them in sha256 order instead of walking the whole table.
    __table_args__ = (
        Index(
            "ix_image_unchecked",
            "sha256",
            sqlite_where=text("quality IS NULL"),
            postgresql_where=text("quality IS NULL"),
        ),
        Index(
            "ix_image_unhashed",
            "sha256",
            sqlite_where=text("phash IS NULL"),
            postgresql_where=text("phash IS NULL"),
        ),
    )
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_key: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # 64-bit perceptual hash as signed BIGINT (phash_to_db / phash_from_db). No plain index:
    # matching is in memory (curation/neardup.py); ix_image_unhashed finds the NULLs.
    phash: Mapped[int | None] = mapped_column(BigInteger)
    # Quality filters (curation): NULL = not checked yet, "ok", or "rejected" with a reason.
    quality: Mapped[str | None] = mapped_column(String(16))
    quality_reason: Mapped[str | None] = mapped_column(Text)
    # Near-duplicate clustering: the representative image's sha256 (NULL = it is its own).
    near_dup_of: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    # The curate scan's lease (curation/filters.py): which process holds the row, until when.
    lease_owner: Mapped[str | None] = mapped_column(String(128), default=None)
    lease_until: Mapped[float | None] = mapped_column(Float, default=None)


class Candidate(LeaseMixin, Base):
    __tablename__ = "candidate"
    __table_args__ = (
        UniqueConstraint("wnid", "url"),
        # The work queue's two claim scans (db/queue.py): pending by id, expired by lease end.
        Index("ix_candidate_status_id", "status", "id"),
        Index("ix_candidate_status_lease_until", "status", "lease_until"),
    )
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    wnid: Mapped[str] = mapped_column(ForeignKey("synset.wnid"), index=True)
    url: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="urllist")
    source_ref: Mapped[str | None] = mapped_column(Text)
    query_id: Mapped[int | None] = mapped_column(ForeignKey("query.id"))
    title: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(Text)
    # pending -> fetching -> fetched | failed | rejected | duplicate
    status: Mapped[str] = mapped_column(String(16), default="pending")
    http_status: Mapped[int | None] = mapped_column(Integer)
    # Final-status reason, a short machine-readable code then detail: "http_404", "decode: ...".
    error: Mapped[str | None] = mapped_column(Text)
    image_sha256: Mapped[str | None] = mapped_column(ForeignKey("image.sha256"), index=True)
    fetched_at: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Hit(Base):
    """A HIT this requester published (requester-side record, whichever server hosts it)."""

    __tablename__ = "hit"
    # publish's open items and collect's finished HITs are found by status (mturk/planning.py).
    __table_args__ = (Index("ix_hit_status", "status"),)
    hit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_type_id: Mapped[str] = mapped_column(String(64))
    wnid: Mapped[str] = mapped_column(ForeignKey("synset.wnid"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="Assignable")
    request_token: Mapped[str] = mapped_column(String(64), unique=True)
    max_assignments: Mapped[int] = mapped_column(Integer, default=3)
    reward: Mapped[str] = mapped_column(String(16), default="0.10")
    endpoint: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    expires_at: Mapped[float | None] = mapped_column(Float)
    collected_at: Mapped[float | None] = mapped_column(Float)


class HitItem(Base):
    __tablename__ = "hit_item"
    hit_id: Mapped[str] = mapped_column(ForeignKey("hit.hit_id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidate.id"), index=True)
    # Known answer for gold items (not counted as votes for the item), NULL otherwise.
    gold_label: Mapped[bool | None] = mapped_column(Boolean)


class Assignment(Base):
    __tablename__ = "assignment"
    # collect's review step pages through the unreviewed ones by key (mturk/collect.py).
    __table_args__ = (Index("ix_assignment_reviewed_at", "reviewed_at", "assignment_id"),)
    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hit_id: Mapped[str] = mapped_column(ForeignKey("hit.hit_id"), index=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    # Submitted | Approved | Rejected (as MTurk), plus "Invalid" when the answer could not be parsed.
    status: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[float | None] = mapped_column(Float)
    answer_xml: Mapped[str | None] = mapped_column(Text)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    gold_seen: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    reviewed_at: Mapped[float | None] = mapped_column(Float)


class Vote(Base):
    __tablename__ = "vote"
    # collect's one-vote-per-worker-and-item check reads the votes of a batch's items.
    __table_args__ = (Index("ix_vote_candidate_id_worker_id", "candidate_id", "worker_id"),)
    assignment_id: Mapped[str] = mapped_column(
        ForeignKey("assignment.assignment_id"), primary_key=True
    )
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidate.id"), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    wnid: Mapped[str] = mapped_column(String(16), index=True)
    is_match: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Worker(Base):
    __tablename__ = "worker"
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gold_seen: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why routing stopped giving the worker work (uninformative | redundant; None: it did not),
    # and the dependent group (its smallest worker id) they vote with, kept across synsets.
    routing: Mapped[str | None] = mapped_column(String(16))
    dependence_group: Mapped[str | None] = mapped_column(String(64))


class WorkerVerdict(Base):
    """What one synset's consensus fit said about a worker (wnid "*": the crowd-wide pass).

    Each run replaces the rows of the synsets it decided, so shards on many machines refresh
    their own synsets' verdicts without undoing another's; `worker.routing` and
    `worker.dependence_group` are recomputed from all rows (curation/consensus/crowd.py)."""

    __tablename__ = "worker_verdict"
    wnid: Mapped[str] = mapped_column(String(16), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    uninformative: Mapped[bool] = mapped_column(Boolean, default=False)
    # The dependent group found there (its smallest worker id), and the worker's skill there
    # (a group's most skilled member keeps getting work).
    dependence_group: Mapped[str | None] = mapped_column(String(64))
    skill: Mapped[float | None] = mapped_column(Float)


class Label(Base):
    __tablename__ = "label"
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidate.id"), primary_key=True)
    wnid: Mapped[str] = mapped_column(String(16), index=True)
    votes_yes: Mapped[int] = mapped_column(Integer, default=0)
    votes_no: Mapped[int] = mapped_column(Integer, default=0)
    posterior: Mapped[float | None] = mapped_column(Float)
    # accept | reject | undecided | insufficient_crowd (no eligible worker left can decide it;
    # posterior is then the precision accepting it would have)
    decision: Mapped[str] = mapped_column(String(32), default="undecided", index=True)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class ConsensusSynset(Base):
    """Per synset, the last consensus run's crowd figures (status and review page read them)."""

    __tablename__ = "consensus_synset"
    wnid: Mapped[str] = mapped_column(String(16), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    items: Mapped[int] = mapped_column(Integer)
    insufficient: Mapped[int] = mapped_column(Integer)
    # Annotators (of the measured skill) the insufficient items would need; None: none needed.
    crowd_needed: Mapped[int | None] = mapped_column(Integer)
    eligible_workers: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class GoldItem(Base):
    """Gold promoted by `imnet mturk gold` (hand overrides and confident labels, capped)."""

    __tablename__ = "gold_item"
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidate.id"), primary_key=True)
    wnid: Mapped[str] = mapped_column(String(16), index=True)
    answer: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # override | consensus
    posterior: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ClassChoice(Base):
    """A named class set (e.g. "ilsvrc2012" or an automatic choice) and each class's index."""

    __tablename__ = "class_choice"
    __table_args__ = (UniqueConstraint("set_name", "class_index"),)
    set_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    wnid: Mapped[str] = mapped_column(String(16), primary_key=True)
    class_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Export(Base):
    __tablename__ = "export"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    format: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    params_json: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    # encoding (the plan is stored, files being written) -> finalizing (one process writes the
    # manifest) -> complete. Rows from before exports were resumable are complete.
    status: Mapped[str] = mapped_column(String(16), default="encoding", server_default="complete")


class ExportItem(Base):
    __tablename__ = "export_item"
    __table_args__ = (
        # Plan order: keyset pages for encoding shards and the streaming manifest.
        Index("ix_export_item_export_id_position", "export_id", "position", unique=True),
    )
    export_id: Mapped[int] = mapped_column(ForeignKey("export.id"), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(ForeignKey("image.sha256"), primary_key=True)
    wnid: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(8))
    class_index: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    # The item's place in the export (train by class, then val, then test); `--shard i/N`
    # encodes the items with position % N == i.
    position: Mapped[int | None] = mapped_column(BigInteger)
    # pending -> done | failed (encoding). Rows from before exports were resumable are done.
    status: Mapped[str] = mapped_column(String(8), default="pending", server_default="done")
    url: Mapped[str | None] = mapped_column(Text)
    # The exported JPEG, recorded by the worker that wrote it (the manifest is built from these).
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    file_bytes: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # The candidate the image is exported as: its licence, author and page (migration 0007).
    candidate_id: Mapped[int | None] = mapped_column(BigInteger)
