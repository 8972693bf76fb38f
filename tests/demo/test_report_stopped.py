"""The demo report says in words why verification stopped, next to the code."""

from __future__ import annotations

import pytest

from imnet.demo.report import format_section


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("round_cap", "cap on publish/collect rounds"),
        ("nothing_needs_votes", "no item needs more votes"),
        ("same_3_items_for_4_rounds", "hovers at the threshold"),
    ],
)
def test_stopped_is_explained(code: str, words: str) -> None:
    text = format_section("verify", {"stopped": code, "seconds": 1.0})
    line = next(x for x in text.splitlines() if "stopped:" in x)
    assert line.startswith(f"  stopped: {code} (") and words in line
