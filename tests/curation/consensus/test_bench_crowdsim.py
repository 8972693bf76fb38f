"""bench/consensus.py's crowd simulation runs the pipeline's gold layout and routing (and its what-ifs)."""

from __future__ import annotations

import numpy as np
import pytest

# Imported before any test puts bench/ first on sys.path, where bench/curation.py would stand
# in for the package when bench/_crowdsim.py imports it.
from curation.consensus.crowd import under_gold_bar


def test_gold_schedule_front_loads_gold(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/_crowdsim.py's what-if gold schedule (--gold-schedule; the pipeline has no such
    # layout): a new worker's HITs carry 4 gold tiles in 24 until 8 gold answers, then 1 in 24;
    # the pipeline's layout without a warm-up gives 2 in 24 throughout.
    from pathlib import Path

    # bench/ holds flat scripts (bench/curation.py would shadow the package): on sys.path only
    # for this test, so processes spawned by later tests don't import the wrong `curation`.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import _crowdsim
    from _crowdsim import GOLD_KNOWN_AFTER, gold_due

    monkeypatch.setattr(_crowdsim, "GOLD_RATE", _crowdsim.gold_rate(0))
    cast = np.array([0, 10, 40, 100, 400])
    sched, fixed = gold_due(cast, True), gold_due(cast, False)
    assert sched[2] == GOLD_KNOWN_AFTER and sched[2] > fixed[2]  # known after 40 votes
    assert sched[-1] < fixed[-1] * 0.7  # after 400 votes: two thirds of the old gold
    assert (np.diff(sched) >= 0).all()


def test_bench_runs_the_pipelines_gold_and_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/consensus.py must measure what the pipeline does: every HIT's gold tiles
    # (mturk/verify.py), collect's gold qualification in every crowd, and routing away as
    # uninformative only once gold is measured (crowd.py). Until 2026-12-07 it charged a
    # per-worker gold schedule the pipeline has no layout for and routed on votes alone.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import _crowdsim
    import consensus
    from _crowdsim import Crowd, State, Synset
    from _crowdsim_policies import RobustPolicy

    from imnet.core.settings import Settings

    s = Settings()
    assert not consensus.GOLD_SCHEDULE
    # mturk/warmup.py: a warm-up page, then the warmed-up workers' gold on every
    # mturk_warmed_gold_every-th HIT (mturk/verify.py plan_hits: each HIT holds tiles - gold
    # real items, with its check image or without).
    assert _crowdsim.WARMUP == s.mturk_warmup_gold > 0
    gold, tiles = s.mturk_warmed_gold_per_hit, s.mturk_images_per_hit
    every = s.mturk_warmed_gold_every
    assert _crowdsim.GOLD_RATE == pytest.approx(gold / (every * (tiles - gold)))
    # Four careful workers (right 90% of the time, each on their own) vote on 60 items;
    # worker 4 says yes to everything.
    rng = np.random.default_rng(3)
    n, nw = 60, 5
    truth = (rng.random(n) < 0.25).astype(np.int64)
    items = np.repeat(np.arange(n), nw)
    workers = np.tile(np.arange(nw), n)
    careful = np.where(rng.random(len(items)) < 0.9, truth[items], 1 - truth[items])
    labels = np.where(workers == 4, 1, careful)
    crowd = Crowd(kind=np.zeros(nw, np.int64), drift_at=np.full(nw, 10**9))
    crowd.cast = np.zeros(nw, np.int64)
    syn = Synset(truth=truth, ambiguous=np.zeros(n, bool), sheet=truth)

    def state(gold_seen: int) -> State:
        st = State(crowd=crowd, syn=syn)
        st.item, st.worker, st.label = [items], [workers], [labels]
        st.time = [np.arange(len(items))]
        gw = np.repeat(np.arange(nw), gold_seen)
        st.gold_worker = [gw]
        st.gold_correct = [np.where(gw == 4, np.arange(len(gw)) % 2, 1)]
        st.gold_time = [np.zeros(len(gw), np.int64)]
        st.voted = np.zeros((n, nw), bool)
        st.voted[items, workers] = True
        return st

    before = RobustPolicy(**consensus.ROBUST)
    _, blocked = before.step(state(gold_seen=2))
    assert before.model is not None and before.model.uninformative_[4]  # the model sees it...
    assert not blocked[4]  # ...but with 2 gold answers routing waits, as crowd.py does
    after = RobustPolicy(**consensus.ROBUST)
    _, blocked = after.step(state(gold_seen=s.mturk_min_gold_seen))
    assert blocked[4] and not blocked[:4].any()  # half its gold right: blocked


def test_bench_warms_up_new_workers_before_their_first_vote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As mturk/warmup.py: every worker answers the warm-up page's gold before any real vote,
    # and one under collect's gold bar there is shut out without casting a vote.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import _crowdsim
    import consensus
    from _crowdsim import Clock, make_crowd, make_synset, run_synset
    from _crowdsim_policies import RobustPolicy

    from imnet.core.settings import Settings

    s = Settings()
    rng = np.random.default_rng(5)
    # A crowd big enough for the bar's point estimate (under_gold_bar): always-yes workers, 4
    # of 8 on the balanced warm-up page, are under it; a small crowd would wait for the test.
    crowd = make_crowd({"good": 0.7, "always-yes": 0.3}, s.mturk_gold_bar_crowd + 15, rng)
    syn = make_synset(120, 0.25, 0.0, rng)
    gold: dict = {"w": [], "c": [], "t": []}
    run_synset(RobustPolicy(**consensus.ROBUST), crowd, syn, gold, Clock(), rng)
    gw, gc, gt = (np.concatenate(gold[k]) for k in ("w", "c", "t"))
    first = (gt == 0) & (np.arange(len(gt)) < crowd.n * _crowdsim.WARMUP)
    assert np.bincount(gw[first], minlength=crowd.n).tolist() == [_crowdsim.WARMUP] * crowd.n
    ok = np.bincount(gw[first], gc[first], minlength=crowd.n)
    seen = np.full(crowd.n, _crowdsim.WARMUP)
    failed = under_gold_bar(
        seen,
        ok.astype(np.int64),
        s.mturk_min_worker_gold,
        s.mturk_min_gold_seen,
        s.mturk_gold_bar_alpha,
        s.mturk_gold_bar_crowd,
    )
    assert (failed == (ok < s.mturk_min_worker_gold * _crowdsim.WARMUP)).all()  # the point rule
    assert failed.any() and (crowd.cast[failed] == 0).all()
    assert (crowd.cast[~failed] > 0).all()


def test_the_copiers_what_if_hands_the_true_group_over(monkeypatch: pytest.MonkeyPatch) -> None:
    # --groups-known-after N: the true copiers are the policy's one group once the first synset
    # has N votes (how much of the gap to the oracle is the time it takes to find them).
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import _crowdsim_policies
    import consensus
    from _crowdsim import KINDS, Crowd, State, Synset
    from _crowdsim_policies import RobustPolicy

    n, nw = 40, 6
    kind = np.array([KINDS.index("good")] * 4 + [KINDS.index("colluder")] * 2)
    crowd = Crowd(kind=kind, drift_at=np.full(nw, 10**9))
    truth = np.zeros(n, np.int64)
    syn = Synset(truth=truth, ambiguous=np.zeros(n, bool), sheet=truth)
    items = np.repeat(np.arange(n), 2)
    workers = np.tile([0, 4], n)

    def groups(after: int | None) -> list[list[int]]:
        monkeypatch.setattr(_crowdsim_policies, "GROUPS_KNOWN_AFTER", after)
        st = State(crowd=crowd, syn=syn)
        st.item, st.worker, st.label = [items], [workers], [np.zeros(len(items), np.int64)]
        st.time = [np.arange(len(items))]
        st.voted = np.zeros((n, nw), bool)
        st.voted[items, workers] = True
        pol = RobustPolicy(**consensus.ROBUST)
        pol.step(st)
        assert pol.model is not None
        return [g.tolist() for g in pol.model.groups_]

    assert groups(None) == []  # no co-votes between the copiers: nothing to find
    assert groups(len(items)) == [[4, 5]]
    assert groups(len(items) + 1) == []  # not yet


def test_the_window_what_if_holds_fresh_items_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # --open-window N: items nobody has voted on get their first votes only while fewer than N
    # items are open, and an open item no eligible worker can answer takes no room.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import _crowdsim_policies
    import consensus
    from _crowdsim import KINDS, Crowd, State, Synset
    from _crowdsim_policies import RobustPolicy, open_window

    need = np.array([2, 1, 0, 2, 2, 2])
    voted = np.zeros((6, 3), bool)
    voted[[0, 1, 2], 0] = True  # items 0 and 1 open, item 2 decided, items 3-5 fresh
    blocked = np.zeros(3, bool)
    assert open_window(need, voted, blocked, 3).tolist() == [2, 1, 0, 2, 0, 0]
    assert open_window(need, voted, blocked, 10).tolist() == need.tolist()
    voted[0, 1:] = True  # nobody is left to answer item 0: it takes no room
    assert open_window(need, voted, blocked, 3).tolist() == [2, 1, 0, 2, 2, 0]

    n, nw = 40, 6
    crowd = Crowd(kind=np.full(nw, KINDS.index("good")), drift_at=np.full(nw, 10**9))
    truth = np.zeros(n, np.int64)
    st = State(crowd=crowd, syn=Synset(truth=truth, ambiguous=np.zeros(n, bool), sheet=truth))
    st.voted = np.zeros((n, nw), bool)
    for window, asked in ((None, n), (5, 5)):
        monkeypatch.setattr(_crowdsim_policies, "OPEN_WINDOW", window)
        got, _ = RobustPolicy(**consensus.ROBUST).step(st)
        assert int((got > 0).sum()) == asked


def test_the_hit_votes_what_if_gives_whole_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    # --hit-votes: as mturk/verify.py plans them, items wanting the same number of votes share
    # HITs of 23 and whoever takes a HIT answers every item on it, so the workers who co-vote
    # do so on a whole HIT; a re-ask HIT goes only to workers who voted on none of its items,
    # and nobody takes more than HITS_PER_ROUND HITs in a round.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    from _crowdsim import HIT_ITEMS, HITS_PER_ROUND, hit_votes

    assert HIT_ITEMS == 23
    rng = np.random.default_rng(3)
    n, nw = 100, 30
    need = np.full(n, 2)
    need[60:] = 3
    elig = np.ones((n, nw), bool)
    elig[60:, :5] = False  # workers 0-4 voted on the re-asks already
    items, workers = hit_votes(need, elig, rng)
    assert (np.bincount(items, minlength=n) == need).all()
    assert elig[items, workers].all()
    assert len(set(zip(items.tolist(), workers.tolist(), strict=True))) == len(items)
    # Items on one HIT have the same voters: 60 items at level 2 make HITs of 23, 23 and 14,
    # 40 at level 3 of 23 and 17 (one random worker per vote would give ~100 voter sets).
    voters: dict[frozenset[int], int] = {}
    for i in range(n):
        key = frozenset(workers[items == i].tolist())
        voters[key] = voters.get(key, 0) + 1
    assert sorted(voters.values()) == [14, 17, 23, 23, 23]
    # A crowd too small for the round: each worker takes at most HITS_PER_ROUND whole HITs.
    items, workers = hit_votes(np.full(200, 2), np.ones((200, 3), bool), rng)
    assert (np.bincount(workers, minlength=3) <= HITS_PER_ROUND * HIT_ITEMS).all()
    assert len(items) > HIT_ITEMS * 4  # (the other HITs wait for the next round)
    assert np.bincount(items, minlength=200).max() == 2


def test_a_missed_goal_says_how_many_events_it_is_short_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cell's verdict can rest on one false accept: the report says so beside MISS.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    import consensus

    # 1,000 accepts at 0.997 allow 3 false ones; 500 positives at 0.98 allow 10 missed.
    r = {"acc": 1000, "tp": 995, "pos": 500}
    assert consensus._short(r, 0.997, True) == " (over by 2 false accept(s))"
    r = {"acc": 490, "tp": 488, "pos": 500}  # 1 false accept allowed (1.47), 10 missed
    assert consensus._short(r, 0.997, True) == " (over by 1 false accept(s), 2 missed positive(s))"
    assert consensus._short(r, 0.997, False) == " (over by 1 false accept(s))"
    assert consensus._short({"acc": 100, "tp": 100, "pos": 100}, 0.99, True) == ""


def test_the_latent_copiers_what_if_finds_a_cartel_and_no_careful_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --latent-groups: twenty of fifty workers copy one sheet (right on 75% of the items), six
    # votes per item: each pair co-votes on ~2 items, too few for a pair test, but the whole
    # group's identical votes give it away. The same careful crowd without copiers: nobody.
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "bench"))
    from _latent_copiers import latent_group

    def crowd(n_copy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        n, nw = 200, 50
        truth = (rng.random(n) < 0.25).astype(np.int64)
        sheet = np.where(rng.random(n) < 0.75, truth, 1 - truth)
        item = np.repeat(np.arange(n), 6)
        worker = np.concatenate([rng.choice(nw, 6, replace=False) for _ in range(n)])
        label = np.where(rng.random(len(item)) < 0.92, truth[item], 1 - truth[item])
        return item, worker, np.where(worker < n_copy, sheet[item], label)

    assert latent_group(*crowd(20), 200, 50).tolist() == list(range(20))
    assert len(latent_group(*crowd(0), 200, 50)) == 0
