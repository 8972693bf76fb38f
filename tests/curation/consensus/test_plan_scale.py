"""Consensus at scale: the per-synset streamed loader equals the old whole-dataset one, any split
of the synsets over processes writes the same labels, and labels are written by batched upserts."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
from sqlalchemy import delete, select

from curation.consensus import labels as labels_mod
from curation.consensus.decide import run_consensus
from curation.consensus.loading import in_shard, load_votes, synset_wnids
from curation.consensus.parallel import parse_shard, run_parallel, sub_shards
from db.models import Image, Label, Worker
from imnet.cli import main
from mturk.verify import needs_votes, pending_asks
from tests import dbrows

WNIDS = ["n00000011", "n00000012", "n00000013", "n00000014"]


def _fill(app) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """Four synsets with repeated votes, rejected assignments, blocked and gold-scored workers,
    hand labels, an open HIT, an image failed by the quality filter and an unvoted item."""
    rng = random.Random(15)
    pool = [f"wk{k:02d}" for k in range(14)]
    with app.Session() as s:
        ids = {}
        for w in WNIDS:
            dbrows.add_synset(s, w)
            ids[w] = dbrows.add_candidates(s, w, 18)
        for n, w in enumerate(WNIDS):
            truth = {c: rng.random() < 0.3 for c in ids[w]}
            for rnd in range(3):
                rows = []
                for c in ids[w][1:]:  # the first item gets no vote
                    for wk in rng.sample(pool, rng.randint(0, 3)):
                        rows.append((c, wk, truth[c] if rng.random() < 0.85 else not truth[c]))
                status = "Rejected" if rnd == 1 and n % 2 else "Approved"
                dbrows.add_votes(s, w, rows, status=status, t0=1000.0 * (rnd + 1))
        for k, wk in enumerate(pool):
            row = s.get(Worker, wk)
            row.gold_seen, row.gold_correct = 10 + k, min(10 + k, 6 + k)
            row.blocked = k in (3, 4)
        s.get(Worker, "wk04").gold_correct = 4  # blocked and near chance: distrusted
        for w in WNIDS[:2]:
            s.add(Label(candidate_id=ids[w][2], wnid=w, decision="accept", overridden=True))
            s.add(Label(candidate_id=ids[w][3], wnid=w, decision="reject", overridden=True))
        dbrows.add_open_hit(s, WNIDS[1], ids[WNIDS[1]][4:9], max_assignments=3)
        img = s.get(Image, _sha(s, ids[WNIDS[2]][5]))
        img.quality = "rejected"
        s.commit()
    return ids


def _sha(s, cid: int) -> str:  # type: ignore[no-untyped-def]
    from db.models import Candidate

    return s.get(Candidate, cid).image_sha256


def _labels(app) -> list[tuple]:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        rows = s.execute(
            select(
                Label.candidate_id,
                Label.wnid,
                Label.votes_yes,
                Label.votes_no,
                Label.posterior,
                Label.decision,
                Label.decided_by,
                Label.overridden,
            ).order_by(Label.candidate_id)
        )
        return [tuple(r) for r in rows]


def _reset(app) -> None:  # type: ignore[no-untyped-def]
    with app.Session() as s:
        s.execute(delete(Label).where(Label.overridden.is_(False)))
        s.commit()


def test_streamed_loader_equals_the_whole_dataset_loader(app) -> None:  # type: ignore[no-untyped-def]
    from tests.curation.consensus.wholeload import old_load_votes, old_pending

    _fill(app)
    with app.Session() as s:
        for wnids in (None, WNIDS[1:3], ["n09999999"]):
            old = old_load_votes(s, wnids, app.settings)
            new = load_votes(s, wnids, app.settings)
            old_asked = old_pending(s, wnids)
            assert [d.wnid for d in new] == [d.wnid for d in old]
            for a, b in zip(old, new, strict=True):
                assert a.candidate_ids == b.candidate_ids
                assert a.votes.worker_keys == b.votes.worker_keys
                assert (a.votes.n_items, a.votes.n_workers) == (b.votes.n_items, b.votes.n_workers)
                for f in ("item", "worker", "label"):
                    assert np.array_equal(getattr(a.votes, f), getattr(b.votes, f)), f
                # The streamed loader's order is the votes' time (microseconds), the reference's
                # their row position: the same sequence.
                assert np.array_equal(
                    np.argsort(a.votes.order, kind="stable"),
                    np.argsort(b.votes.order, kind="stable"),
                )
                for f in (
                    "calibration",
                    "known",
                    "gold_seen",
                    "gold_correct",
                    "blocked",
                ):
                    assert np.array_equal(getattr(a, f), getattr(b, f)), f
                # The open asks now come from the verification loop, per synset.
                asked = pending_asks(s, b.wnid)
                assert [asked.get(c, 0) for c in b.candidate_ids] == [
                    old_asked.get(c, 0) for c in a.candidate_ids
                ]
        # The fill exercises what the loader filters: repeats, rejected votes, hand labels,
        # distrusted workers, open asks.
        everything = load_votes(s, None, app.settings)
        assert sum(len(d.votes) for d in everything) > 100
        assert any((d.known >= 0).any() for d in everything)
        assert any(d.blocked.any() for d in everything)
        assert any(any(pending_asks(s, d.wnid).values()) for d in everything)


@pytest.mark.slow
def test_any_split_of_synsets_writes_the_same_labels(app) -> None:  # type: ignore[no-untyped-def]
    _fill(app)
    # robust: its crowd-wide dependence pass runs once in run_parallel's parent.
    for algorithm in ("worker-aware", "dynamic", "robust"):
        with app.Session() as s:
            one = run_consensus(s, algorithm, settings=app.settings)
            needs = needs_votes(s, settings=app.settings)
        want = _labels(app)
        assert len(want) > 40 and one["totals"]["manual"] == 4
        _reset(app)
        # Two processes, each with its own connection, at the same time.
        two = run_parallel(app.settings, algorithm, None, processes=2)
        assert _labels(app) == want
        assert two["totals"] == one["totals"] and two["per_wnid"] == one["per_wnid"]
        _reset(app)
        # Shards run one after another, as separate invocations on other machines would.
        reports = []
        for i in range(3):
            with app.Session() as s:
                reports.append(run_consensus(s, algorithm, settings=app.settings, shard=(i, 3)))
        assert _labels(app) == want
        assert sorted(w for r in reports for w in r["per_wnid"]) == WNIDS
        with app.Session() as s:
            assert needs_votes(s, settings=app.settings) == needs


def test_shards_partition_the_synsets(app) -> None:  # type: ignore[no-untyped-def]
    names = [f"n{k:08d}" for k in range(200)]
    for n in (1, 2, 5):
        owners = [[i for i in range(n) if in_shard(w, (i, n))] for w in names]
        assert all(len(o) == 1 for o in owners)
        for i in range(n):
            subs = sub_shards((i, n), 3)
            mine = {w for w in names if in_shard(w, (i, n))}
            got = [{w for w in names if in_shard(w, sh)} for sh in subs]
            assert set().union(*got) == mine and sum(map(len, got)) == len(mine)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    _fill(app)
    with app.Session() as s:
        assert synset_wnids(s) == WNIDS
        assert synset_wnids(s, ["n00000012", "n00000011"]) == ["n00000011", "n00000012"]


def test_upserts_batch_and_leave_unchanged_and_hand_labels_alone(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ids = _fill(app)
    monkeypatch.setattr(labels_mod, "UPSERT_ROWS", 4)  # many calls per synset
    with app.Session() as s:
        run_consensus(s, "majority", settings=app.settings)
    first = _labels(app)
    assert len(first) > 40
    with app.Session() as s:
        stamps = dict(s.execute(select(Label.candidate_id, Label.updated_at)).all())
    time.sleep(0.01)
    with app.Session() as s:
        run_consensus(s, "majority", settings=app.settings)
        # Nothing changed: no row was rewritten.
        assert dict(s.execute(select(Label.candidate_id, Label.updated_at)).all()) == stamps
        # A hand override made after the run read the synset survives its write.
        w = WNIDS[3]
        cid = next(c for c in ids[w][1:] if s.get(Label, c) is not None)
        lab = s.get(Label, cid)
        lab.decision, lab.overridden = "accept", True
        s.commit()
        n = len(ids[w])
        labels_mod.write_labels(
            s,
            w,
            "majority",
            ids[w],
            np.ones(n, int),
            np.zeros(n, int),
            np.ones(n),
            np.array(["reject"] * n, dtype=object),
            {},
            np.array([], dtype=np.int64),
        )
        s.commit()
        s.expire_all()
        assert (s.get(Label, cid).decision, s.get(Label, cid).overridden) == ("accept", True)
        # The unvoted first item now has a label row; the others were rewritten.
        assert s.get(Label, ids[w][0]).decision == "reject"


@pytest.mark.slow
def test_cli_processes_and_shard(app, capsys) -> None:  # type: ignore[no-untyped-def]
    _fill(app)
    s = app.settings
    argv = ["--data-dir", s.data_dir, "--database-url", s.resolved_database_url(), "consensus"]
    assert main([*argv, "run", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    want = _labels(app)
    _reset(app)
    assert main([*argv, "run", "--json", "--processes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == one["totals"]
    assert _labels(app) == want
    _reset(app)
    for i in range(2):
        assert main([*argv, "run", "--shard", f"{i}/2"]) == 0
    assert _labels(app) == want
    capsys.readouterr()
    for bad in (["--shard", "2/2"], ["--shard", "x"], ["--processes", "0"]):
        try:  # argparse's range checks exit from parse_args, the command's own checks return 2
            code = main([*argv, "run", *bad])
        except SystemExit as e:
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err and "\n" not in err and "Traceback" not in err
