"""The HIT layout: a self-contained HTML task document wrapped as an MTurk HTMLQuestion."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus

HTML_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
)
PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
# Answer field names: one checkbox per tile, plus the tile count so a parser can tell a
# "nothing ticked" answer from a truncated one.
ITEM_FIELD = "item_{}"
COUNT_FIELD = "n_items"
ITEM_RE = re.compile(r"^item_(\d{1,4})$")


@dataclass(frozen=True)
class Tile:
    """One image in the grid; gold tiles look exactly like the others (their answer is known)."""

    position: int
    sha256: str
    src: str
    title: str = ""


def esc(value: object) -> str:
    """Escape text for HTML element content and quoted attribute values."""
    return html.escape(str(value), quote=True)


def wikipedia_search_url(lemma: str) -> str:
    return "https://en.wikipedia.org/w/index.php?search=" + quote_plus(lemma.replace("_", " "))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:1.3em;margin:0 0 4px} .gloss{margin:0 0 8px;font-style:italic}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px}
.tile{border:2px solid #ccc;border-radius:6px;padding:4px;text-align:center;cursor:pointer}
.tile img{max-width:160px;max-height:160px;display:block;margin:0 auto}
.tile.on{border-color:#2a7} .bar{margin:12px 0} .preview{color:#a00;font-weight:bold}
"""

# Reads MTurk's query parameters; in preview the form stays disabled. Values from the URL are only
# ever assigned to form properties and textContent, never parsed as HTML.
_SCRIPT = """
(function(){
  var p = new URLSearchParams(window.location.search);
  var aid = p.get('assignmentId') || '%(preview)s';
  var to = p.get('turkSubmitTo') || '';
  var form = document.getElementById('mturk_form');
  document.getElementById('assignmentId').value = aid;
  form.action = to.replace(/\\/+$/, '') + '/mturk/externalSubmit';
  var preview = (aid === '%(preview)s');
  var boxes = form.querySelectorAll('input[type=checkbox]');
  for (var i = 0; i < boxes.length; i++) {
    boxes[i].disabled = preview;
    boxes[i].addEventListener('change', function(e){
      e.target.closest('.tile').classList.toggle('on', e.target.checked);
    });
  }
  var btn = document.getElementById('submitButton');
  btn.disabled = preview;
  if (preview) {
    document.getElementById('previewNote').textContent =
      'Preview: accept the HIT to select images and submit.';
    form.addEventListener('submit', function(e){ e.preventDefault(); });
  }
})();
"""


def render_task_html(
    wnid: str,
    lemmas: Sequence[str],
    gloss: str,
    tiles: Sequence[Tile],
    *,
    title: str = "Select every image that shows this concept",
) -> str:
    """A complete HTML document; every outside string (lemmas, gloss, URLs, titles) is escaped."""
    names = [str(x).replace("_", " ") for x in lemmas] or [wnid]
    head = names[0]
    tile_html = []
    for t in tiles:
        name = ITEM_FIELD.format(t.position)
        tile_html.append(
            f'<label class="tile" data-sha256="{esc(t.sha256)}" data-position="{t.position}">'
            f'<img src="{esc(t.src)}" alt="{esc(t.title or "candidate image")}" loading="lazy">'
            f'<input type="checkbox" name="{name}" value="yes"> shows it</label>'
        )
    script = _SCRIPT % {"preview": PREVIEW_ASSIGNMENT_ID}
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}: {esc(head)}</title><style>{_STYLE}</style></head><body>"
        f'<h1 id="lemmas" data-wnid="{esc(wnid)}">{esc(", ".join(names))}</h1>'
        f'<p class="gloss" id="gloss">{esc(gloss)}</p>'
        f'<p>Not sure? <a href="{esc(wikipedia_search_url(head))}" target="_blank" '
        f'rel="noopener noreferrer">Look up &ldquo;{esc(head)}&rdquo; on Wikipedia</a>. '
        "Tick every image that shows this concept (photos, drawings and partial views count; "
        "leave unrelated images unticked).</p>"
        '<form id="mturk_form" method="post" action="">'
        '<input type="hidden" id="assignmentId" name="assignmentId" value="">'
        f'<input type="hidden" name="{COUNT_FIELD}" value="{len(tiles)}">'
        f'<div class="grid">{"".join(tile_html)}</div>'
        '<div class="bar"><span class="preview" id="previewNote"></span> '
        '<button type="submit" id="submitButton">Submit</button></div>'
        f"</form><script>{script}</script></body></html>"
    )


def html_question(document: str, frame_height: int = 0) -> str:
    """Wrap a document in the 2011-11-11 HTMLQuestion XML; CDATA ends inside it are split."""
    body = document.replace("]]>", "]]]]><![CDATA[>")
    return (
        f'<HTMLQuestion xmlns="{HTML_QUESTION_NS}">'
        f"<HTMLContent><![CDATA[{body}]]></HTMLContent>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight></HTMLQuestion>"
    )


def html_from_question(question: str) -> str:
    """The HTML document inside an HTMLQuestion (raises ValueError if it is not one)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(question)
    except ET.ParseError as e:
        raise ValueError(f"question is not XML: {e}") from None
    if root.tag != f"{{{HTML_QUESTION_NS}}}HTMLQuestion":
        raise ValueError(f"unsupported question type {root.tag!r} (HTMLQuestion only)")
    content = root.find(f"{{{HTML_QUESTION_NS}}}HTMLContent")
    if content is None or not (content.text or "").strip():
        raise ValueError("HTMLQuestion has no HTMLContent")
    return content.text or ""


def form_field_names(document: str) -> set[str]:
    """Names of the inputs a task document can submit (the server refuses any other field)."""
    from html.parser import HTMLParser

    names: set[str] = set()

    class _P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in {"input", "textarea", "select", "button"}:
                d = dict(attrs)
                if d.get("name"):
                    names.add(str(d["name"]))

    p = _P(convert_charrefs=True)
    p.feed(document)
    p.close()
    return names
