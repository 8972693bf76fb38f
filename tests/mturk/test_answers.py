"""Answer XML as the server writes it, and defensive parsing: bad answers become reasons."""

from __future__ import annotations

import pytest

from mturk.answers import ANSWERS_NS, AnswerError, answers_xml, parse_fields, parse_grid_answer
from mturk.layout import html_from_question, html_question


def test_answers_xml_round_trip() -> None:
    xml = answers_xml(
        [
            ("n_items", "3"),
            ("item_0", "yes"),
            ("note", "café & <b>"),
            ("multi", "a"),
            ("multi", "b"),
        ]
    )
    assert xml.startswith('<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns=')
    assert ANSWERS_NS in xml and xml.isascii()
    assert parse_fields(xml) == {
        "n_items": "3",
        "item_0": "yes",
        "note": "café & <b>",
        "multi": "a|b",
    }
    got = parse_grid_answer(
        xml.replace(
            "<Answer><QuestionIdentifier>note</QuestionIdentifier>"
            "<FreeText>caf&#233; &amp; &lt;b&gt;</FreeText></Answer>",
            "",
        ).replace(
            "<Answer><QuestionIdentifier>multi"
            "</QuestionIdentifier><FreeText>a|b</FreeText>"
            "</Answer>",
            "",
        ),
        [0, 1, 2],
    )
    assert got.ticked == {0: True, 1: False, 2: False}


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (None, "empty_answer"),
        ("", "empty_answer"),
        ("<QuestionFormAnswers><Answer>", "malformed_xml"),
        ("<Other/>", "malformed_xml"),
        ('<!DOCTYPE x [<!ENTITY a "aaaa">]><QuestionFormAnswers/>', "malformed_xml"),
        (
            "<QuestionFormAnswers><Answer><FreeText>x</FreeText></Answer></QuestionFormAnswers>",
            "missing_field",
        ),
        (answers_xml([("item_0", "yes")]), "missing_field: 'n_items'"),
        (
            answers_xml([("n_items", "2"), ("item_0", "yes"), ("item_0", "yes")]).replace(
                "yes|yes",
                "yes</FreeText></Answer><Answer><QuestionIdentifier>item_0"
                "</QuestionIdentifier><FreeText>yes",
            ),
            "duplicate_field",
        ),
        (answers_xml([("n_items", "5")]), "bad_value: n_items=5"),
        (answers_xml([("n_items", "x")]), "bad_value"),
        (answers_xml([("n_items", "2"), ("item_7", "yes")]), "unknown_item"),
        (answers_xml([("n_items", "2"), ("foo", "yes")]), "unknown_field"),
        (answers_xml([("n_items", "2"), ("item_1", "maybe")]), "bad_value: item_1"),
    ],
)
def test_bad_answers_raise_a_reason(xml: str | None, reason: str) -> None:
    with pytest.raises(AnswerError) as ei:
        parse_grid_answer(xml, [0, 1])
    assert str(ei.value).startswith(reason)


def test_html_question_round_trip_with_cdata_end() -> None:
    doc = "<html><body>a ]]> b</body></html>"
    assert html_from_question(html_question(doc)) == doc
    with pytest.raises(ValueError):
        html_from_question("<ExternalQuestion/>")
