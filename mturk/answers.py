"""QuestionFormAnswers XML: written by the server as MTurk does, parsed defensively by collect."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from mturk.layout import COUNT_FIELD, ITEM_RE

ANSWERS_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/"
    "QuestionFormAnswers.xsd"
)
MAX_ANSWER_BYTES = 1_000_000


def answers_xml(fields: Iterable[tuple[str, str]]) -> str:
    """MTurk's form-to-XML conversion: one Answer per field; repeated names join values with '|'."""
    merged: dict[str, list[str]] = {}
    for name, value in fields:
        merged.setdefault(name, []).append(value)
    parts = [f'<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="{ANSWERS_NS}">']
    for name, values in merged.items():
        parts.append(
            f"<Answer><QuestionIdentifier>{_xml_ascii(name)}</QuestionIdentifier>"
            f"<FreeText>{_xml_ascii('|'.join(values))}</FreeText></Answer>"
        )
    parts.append("</QuestionFormAnswers>")
    return "".join(parts)


def _xml_ascii(s: str) -> str:
    # The document is declared ASCII: anything else becomes a character reference.
    return escape(s).encode("ascii", "xmlcharrefreplace").decode("ascii")


class AnswerError(ValueError):
    """The answer cannot be used; str(e) is the reason recorded on the assignment."""


def parse_fields(xml: str | None) -> dict[str, str]:
    """QuestionIdentifier -> FreeText. Malformed XML, missing or duplicated fields raise."""
    import xml.etree.ElementTree as ET

    if not xml or not xml.strip():
        raise AnswerError("empty_answer: the assignment has no answer")
    if len(xml) > MAX_ANSWER_BYTES:
        raise AnswerError(f"answer_too_large: {len(xml)} bytes")
    if "<!DOCTYPE" in xml.upper() or "<!ENTITY" in xml.upper():
        # MTurk never sends a DTD; refusing one rules out entity-expansion bombs.
        raise AnswerError("malformed_xml: a DOCTYPE or ENTITY declaration is not allowed")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise AnswerError(f"malformed_xml: {type(e).__name__}: {e}") from None
    if _local(root.tag) != "QuestionFormAnswers":
        raise AnswerError(f"malformed_xml: root element is {_local(root.tag)!r}")
    out: dict[str, str] = {}
    for ans in root:
        if _local(ans.tag) != "Answer":
            continue
        qid = None
        text: str | None = None
        for child in ans:
            tag = _local(child.tag)
            if tag == "QuestionIdentifier":
                qid = (child.text or "").strip()
            elif tag == "FreeText":
                text = child.text or ""
        if not qid:
            raise AnswerError("missing_field: an Answer has no QuestionIdentifier")
        if qid in out:
            raise AnswerError(f"duplicate_field: {qid!r} answered twice")
        out[qid] = "" if text is None else text
    return out


def _local(tag: object) -> str:
    t = str(tag)
    return t.rsplit("}", 1)[-1]


@dataclass
class ParsedAnswer:
    """Per tile position: True = ticked, False = shown and not ticked."""

    ticked: dict[int, bool] = field(default_factory=dict)


def parse_grid_answer(xml: str | None, positions: Iterable[int]) -> ParsedAnswer:
    """Interpret a grid HIT's answer against the HIT's tile positions; raises AnswerError."""
    fields = parse_fields(xml)
    expected = set(positions)
    count = fields.pop(COUNT_FIELD, None)
    if count is None:
        raise AnswerError(f"missing_field: {COUNT_FIELD!r}")
    try:
        n = int(count)
    except ValueError:
        raise AnswerError(f"bad_value: {COUNT_FIELD}={count[:40]!r}") from None
    if n != len(expected):
        raise AnswerError(f"bad_value: {COUNT_FIELD}={n}, the HIT has {len(expected)} tiles")
    ticked = {p: False for p in expected}
    for name, value in fields.items():
        m = ITEM_RE.match(name)
        if not m:
            raise AnswerError(f"unknown_field: {name[:60]!r}")
        pos = int(m.group(1))
        if pos not in expected:
            raise AnswerError(f"unknown_item: {name!r} is not a tile of this HIT")
        if value.strip().lower() not in {"yes", "on", "true", "1"}:
            raise AnswerError(f"bad_value: {name}={value[:40]!r}")
        ticked[pos] = True
    return ParsedAnswer(ticked=ticked)
