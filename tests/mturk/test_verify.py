"""The verification loop's own part: open HITs' asks subtracted from what consensus wants, and the fee rule."""

from __future__ import annotations

from decimal import Decimal

from curation.consensus.decide import run_consensus
from curation.consensus.parallel import run_parallel
from mturk.fees import MAX_ASSIGNMENTS_PER_HIT, assignment_cost, estimate_cost, fee_rate
from mturk.verify import needs_votes, pending_asks
from tests import dbrows

WNID = "n00000021"


def test_votes_asked_for_in_open_hits_are_subtracted(app) -> None:  # type: ignore[no-untyped-def]
    app.settings.consensus_algorithm = "worker-aware"
    with app.Session() as s:
        dbrows.add_synset(s, WNID, "owl")
        ids = dbrows.add_candidates(s, WNID, 6)
        s.commit()
        wanted = needs_votes(s, settings=app.settings)
        assert sorted(wanted) == ids and len(set(wanted.values())) == 1
        k = wanted[ids[0]]
        # One open HIT asks for all k votes on the first three, another for k - 1 on the next.
        dbrows.add_open_hit(s, WNID, ids[:3], max_assignments=k)
        dbrows.add_open_hit(s, WNID, ids[3:4], max_assignments=k - 1)
        s.commit()
        assert pending_asks(s, WNID) == {**{c: k for c in ids[:3]}, ids[3]: k - 1}
        assert pending_asks(s, "n09999999") == {}
        assert needs_votes(s, settings=app.settings) == {ids[3]: 1, ids[4]: k, ids[5]: k}
        # Consensus alone knows no HIT: it counts every item that wants votes; given the
        # loop's asks, only those that still need some.
        bare = run_consensus(s, "worker-aware", settings=app.settings)
        asked = run_consensus(s, "worker-aware", settings=app.settings, asked=pending_asks)
    assert bare["totals"]["needs_votes"] == 6 and asked["totals"]["needs_votes"] == 3
    assert {k: v for k, v in asked["totals"].items() if k != "needs_votes"} == {
        k: v for k, v in bare["totals"].items() if k != "needs_votes"
    }
    # The same in a process of its own (the asks function travels by name).
    par = run_parallel(app.settings, "worker-aware", None, processes=1, asked=pending_asks)
    assert par["totals"] == asked["totals"]


def test_one_fee_rule_for_the_estimate_and_the_charge() -> None:
    # MTurk: 20% commission, 40% from 10 assignments on, at least one cent per assignment.
    assert fee_rate(MAX_ASSIGNMENTS_PER_HIT) == Decimal("0.20")
    assert fee_rate(MAX_ASSIGNMENTS_PER_HIT + 1) == Decimal("0.40")
    assert assignment_cost(Decimal("0.10"), 3) == Decimal("0.12")
    assert assignment_cost(Decimal("0.10"), 10) == Decimal("0.14")
    assert assignment_cost(Decimal("0.02"), 1) == Decimal("0.03")  # the one-cent minimum
    assert assignment_cost(Decimal("0.13"), 1) == Decimal("0.16")  # 0.026 rounds half up
    bill = estimate_cost([3, 10], "0.10")
    assert (bill["hits"], bill["assignments"]) == (2, 13)
    assert (bill["rewards"], bill["fees"], bill["total"]) == ("1.30", "0.46", "1.76")
    # The estimate sums unrounded fees: 3 x 0.026 = 0.078, not 3 x 0.03.
    assert estimate_cost([3], "0.13")["fees"] == "0.08"
    assert estimate_cost([], "0.10")["total"] == "0.00"
