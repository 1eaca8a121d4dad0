"""Imaging findings from spine radiology report text, by explicit rules.

Reads the text of an imaging report (FHIR R4 DiagnosticReport.conclusion and presentedForm,
plain text or HTML) and returns findings: stenosis per interspace and compartment with side and
grade, spondylolisthesis (Meyerding grade, mm, direction), and translation / angulation on
flexion-extension views. Every finding carries the sentence that states it, with its character
offsets in the source text. No model, no network, no randomness: the same text always gives the
same findings, and docs/report-text.md explains every rule.

Pipeline for one source text: HTML to text (keeping a map back to the source offsets) ->
sections (FINDINGS, IMPRESSION, ignored ones such as HISTORY) -> sentences -> level headers and
carry-over -> tokens (levels, grades, compartments, sides, cues) -> clauses and segments ->
findings. `extract_report` then applies the report-level rules: the impression wins over the
findings section, duplicates collapse, and an ungraded mention yields to a graded one.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from cds_hooks.spine.levels import (
    INTERSPACES,
    REGIONS,
    VERTEBRAE,
    between,
    report_junction_headers,
    report_junctions,
)

# ------------------------------------------------------------------ level patterns, from the level data


def _vertebra_pattern(names) -> str:
    """An alternation of vertebra names, a space allowed after the letter ("L 4"), longest numbers first."""
    by_letter: dict[str, list[str]] = {}
    for name in names:
        by_letter.setdefault(name[0], []).append(name[1:])
    parts = [
        rf"{letter}\s?(?:{'|'.join(sorted(numbers, key=lambda n: (-len(n), n)))})"
        for letter, numbers in by_letter.items()
    ]
    return "(?:" + "|".join(parts) + ")"


def _compact(pattern: str) -> str:
    return pattern.replace("\\s?", "")


# Upper and lower vertebrae of the interspaces the data knows ("T12", "L4"; "L5", "S1").
_UPPER = _vertebra_pattern(dict.fromkeys(s.split("-")[0] for s in INTERSPACES))
_LOWER = _vertebra_pattern(dict.fromkeys(s.split("-")[1] for s in INTERSPACES))
# A bare lower number ("L4-5"), any of the data's vertebra numbers.
_NUMBER = "(?:" + "|".join(sorted({v[1:] for v in VERTEBRAE}, key=lambda n: (-len(n), n))) + ")"
# An interspace written in a header or at a line start: "L4-5", "L4/L5", "L45", "C5-6".
_LEVEL_HEAD = rf"{_compact(_UPPER)}\s*[-/\u2013]?\s*(?:{_compact(_LOWER)}|{_NUMBER})"
# MRI sequence names that look like levels ("T1/T2 weighted images", "T2-T1 signal"): never a level.
_SEQUENCE_NAME = re.compile(r"^T\s?[12]$", re.I)
_SEQUENCE_AFTER = re.compile(
    r"\s*-?\s*(?:weighted|w|signal|sequences?|images?|imaging|hyper\w*|hypo\w*|iso\w*|FLAIR|STIR|fat|post|pre)\b", re.I
)
_REGION_WORDS = "|".join(sorted(REGIONS))
_JUNCTION_HEAD = "|".join(report_junction_headers()) or "(?!)"

# Presence findings (a yes-or-no statement about one level, such as cord compression): vocabulary in
# data/report_text.json; each kind, its patterns (affirm | subject) and what the segment must also hold.
VOCABULARY = json.loads((Path(__file__).resolve().parent / "data" / "report_text.json").read_text(encoding="utf-8"))
PRESENCE_KINDS: tuple[str, ...] = tuple(VOCABULARY["presenceFindings"])
_PRESENCE_PATTERNS = [
    (
        kind,
        p.get("role", "affirm"),
        re.compile(p["pattern"], re.I),
        re.compile(p["needs"], re.I) if p.get("needs") else None,
    )
    for kind, spec in VOCABULARY["presenceFindings"].items()
    for p in spec["patterns"]
]

GRADES = ("none", "mild", "mild-moderate", "moderate", "moderate-severe", "severe")
RANK = {g: i for i, g in enumerate(GRADES)}
CERTAIN = ("present", "negated")

# Longest source text read per report part; longer text is cut (reports are a few kB).
MAX_CHARS = 200_000


@dataclass(frozen=True)
class Finding:
    """One thing the report says, where it says it, and how sure it is."""

    kind: str  # stenosis | listhesis | translation | angulation | a presence kind (PRESENCE_KINDS)
    level: str | None  # spinal-interspace code, None when the text names none
    status: str  # present | negated | uncertain | historical
    section: str  # impression | findings
    start: int  # sentence offsets in the source text (characters)
    end: int
    quote: str  # the sentence, whitespace collapsed
    source: str = ""  # "conclusion", "presentedForm[0]", ...
    compartment: str | None = None  # central | lateral-recess | foramen
    side: str | None = None  # left | right | bilateral
    grade: str | None = None  # stenosis grade (GRADES)
    slip_grade: int | None = None  # Meyerding grade
    direction: str | None = None  # antero | retro
    mm: float | None = None
    deg: float | None = None
    superseded: tuple["Finding", ...] = field(default=(), compare=False)

    def key(self) -> tuple:
        return (self.kind, self.level, self.compartment, self.side)

    def value(self):
        """The finding's value; None for a presence finding, whose status is all it says."""
        return {
            "stenosis": self.grade,
            "listhesis": (self.slip_grade, self.direction, self.mm),
            "translation": self.mm,
            "angulation": self.deg,
        }.get(self.kind)


# ------------------------------------------------------------------ plain text with offsets


@dataclass
class PlainText:
    """Text to read plus, for HTML, the source offset of every character."""

    text: str
    origin: list[int] | None = None

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None or not self.origin:
            return start, end
        last = len(self.origin) - 1
        return self.origin[min(start, last)], self.origin[min(max(end - 1, start), last)] + 1


_BLOCK_TAGS = {
    "p",
    "br",
    "div",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ol",
    "ul",
    "table",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "dd",
    "dt",
    "hr",
}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*?>|<!--.*?-->|&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", re.S)
_SKIP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)


def _html_to_text(source: str) -> PlainText:
    """Tags out, entities decoded, block tags as line breaks; tables as 'row: header: cell.' lines."""
    out: list[str] = []
    origin: list[int] = []

    def emit(s: str, at: int) -> None:
        out.append(s)
        origin.extend([at] * len(s))

    # Cells of the current table, so that a row reads "L3-4: Canal: Mild. Foramina: Patent."
    headers: list[tuple[str, int]] = []
    row: list[tuple[list[str], list[int]]] = []
    cell: tuple[list[str], list[int]] | None = None
    in_table = 0
    pos = 0
    skips = [(m.start(), m.end()) for m in _SKIP.finditer(source)]

    def text_piece(s: str, at: int) -> None:
        if cell is not None:
            cell[0].append(s)
            cell[1].extend(range(at, at + len(s)))
        else:
            out.append(s)
            origin.extend(range(at, at + len(s)))

    def flush_row() -> None:
        nonlocal headers
        cells = [("".join(c).strip(), o) for c, o in row]
        if not cells:
            return
        if not headers:
            headers = [(t, o[0] if o else 0) for t, o in cells]
            return
        first, first_origin = row[0]
        text0 = "".join(first)
        lead = len(text0) - len(text0.lstrip())
        label = text0.strip()
        emit("\n", first_origin[0] if first_origin else 0)
        out.append(label)
        origin.extend(first_origin[lead : lead + len(label)])
        emit(": ", first_origin[-1] if first_origin else 0)
        for i, (chars, offs) in enumerate(row[1:], start=1):
            t = "".join(chars)
            lead = len(t) - len(t.lstrip())
            value = t.strip()
            if not value:
                continue
            head, head_at = headers[i] if i < len(headers) else ("", offs[0] if offs else 0)
            if head:
                emit(f"{head}: ", head_at)
            out.append(value)
            origin.extend(offs[lead : lead + len(value)])
            emit(". ", offs[-1] if offs else 0)
        emit("\n", first_origin[-1] if first_origin else 0)

    for m in _TAG.finditer(source):
        if any(a <= m.start() < b for a, b in skips):
            continue
        if m.start() > pos:
            piece = source[pos : m.start()]
            if not any(a <= pos < b for a, b in skips):
                text_piece(piece, pos)
        pos = m.end()
        if m.group(3):  # entity
            text_piece(html.unescape(m.group(0)), m.start())
            continue
        if m.group(2) is None:
            continue
        name, closing = m.group(2).lower(), m.group(1) == "/"
        if name == "table":
            in_table += -1 if closing else 1
            headers = [] if not closing else headers
            if closing:
                row, cell = [], None
        elif in_table and name == "tr":
            if closing:
                flush_row()
                row = []
        elif in_table and name in ("td", "th"):
            if closing:
                if cell is not None:
                    row.append(cell)
                cell = None
            else:
                cell = ([], [])
        elif name in _BLOCK_TAGS:
            emit("\n", m.start())
    if pos < len(source):
        text_piece(source[pos:], pos)
    text = "".join(out)
    # Entities decode to one character each but point at their '&'; pad origin if needed.
    if len(origin) < len(text):
        origin.extend([origin[-1] if origin else 0] * (len(text) - len(origin)))
    return PlainText(text, origin[: len(text)])


def plain_text(content: str, content_type: str | None = None) -> PlainText:
    content = content[:MAX_CHARS]
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml") or (
        not kind and re.search(r"<(p|div|br|html|li)\b", content, re.I)
    ):
        return _html_to_text(content)
    return PlainText(content)


# ------------------------------------------------------------------ sections and sentences

_SECTION = re.compile(
    r"(?im)^[ \t]*(?:\d+\.\s*)?(findings|impressions?|conclusions?|summary|opinion|interpretation|addendum|"
    r"clinical\s+history|history|indications?|reason\s+for\s+(?:exam|examination|study)|clinical\s+(?:information|indication|data)|"
    r"comparisons?|technique|procedure|examination|exam|date\s+of\s+exam|protocol|contrast|signed\s+by|electronically\s+signed)"
    r"[ \t]*(?::|$)"
)
_SECTION_KIND = {
    "findings": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "opinion": "impression",
    "interpretation": "impression",
    "addendum": "impression",
}


def sections(text: str, default: str) -> list[tuple[str, int, int]]:
    """(kind, start, end): kind is findings, impression or other (history, technique... not read)."""
    out: list[tuple[str, int, int]] = []
    kind, start = default, 0
    for m in _SECTION.finditer(text):
        name = re.sub(r"\s+", " ", m.group(1).lower())
        out.append((kind, start, m.start()))
        kind, start = _SECTION_KIND.get(name, "other"), m.end()
    out.append((kind, start, len(text)))
    # A history, comparison or technique paragraph ends at a blank line or at a level header.
    split: list[tuple[str, int, int]] = []
    for k, s, e in out:
        m = _OTHER_END.search(text, s, e) if k == "other" else None
        if m:
            split.extend([(k, s, m.start()), ("findings", m.end(), e)])
        else:
            split.append((k, s, e))
    return [(k, s, e) for k, s, e in split if e > s]


_OTHER_END = re.compile(rf"\n[ \t]*\n|\n(?=[ \t]*(?:at\s+)?{_LEVEL_HEAD}\b[^\n:]{{0,40}}:)", re.I)


@dataclass
class Sentence:
    start: int
    end: int
    text: str
    paragraph_start: bool = False  # first sentence after a blank line, a list marker or a new line item


_ABBREV = re.compile(r"(?:\b(?:approx|vs|gr|e\.g|i\.e|dr|no|fig|ca|mr|st)|\b[A-Z])\.$", re.I)
_LINE_START_BREAK = re.compile(
    rf"[ \t]*(?:\d{{1,2}}[.)]\s|[-*\u2022]\s|(?:at\s+)?{_LEVEL_HEAD}\b[^\n:]{{0,40}}:|[A-Za-z][A-Za-z /&-]{{1,40}}:)",
    re.I,
)
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")


def sentences(text: str, start: int, end: int) -> list[Sentence]:
    """Split a section into sentences.

    Lines group into blocks: a block starts after a blank line, at a list item ("1.", "-"), at a
    line that starts with a level header or a label ("L4-L5:", "Central canal:"), and after a line
    ending in a colon; other line breaks are wrapping. Blocks split at a period followed by white
    space (not after "approx.", "vs." or a single letter). A blank line or a list item starts a
    paragraph, which ends what earlier sentences carried over.
    """
    out: list[Sentence] = []
    pos = start
    block_start, block_par = None, True
    prev_blank, prev_colon = True, False
    blocks: list[tuple[int, int, bool]] = []
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl == -1 else nl
        line = text[pos:line_end]
        if not line.strip():
            if block_start is not None:
                blocks.append((block_start, pos, block_par))
                block_start = None
            prev_blank = True
        else:
            is_item = bool(_LIST_MARKER.match(line))
            breaks = is_item or prev_colon or bool(_LINE_START_BREAK.match(line))
            if block_start is not None and (breaks or prev_blank):
                blocks.append((block_start, pos, block_par))
                block_start = None
            if block_start is None:
                block_start, block_par = pos, prev_blank or is_item
            prev_blank = False
            prev_colon = line.rstrip().endswith(":")
        pos = line_end + 1
    if block_start is not None:
        blocks.append((block_start, end, block_par))
    for b_start, b_end, par in blocks:
        seg_start = b_start
        first = True
        for i in range(b_start, b_end):
            if (
                text[i] == "."
                and (i + 1 >= b_end or text[i + 1].isspace())
                and not _ABBREV.search(text[max(seg_start, i - 6) : i + 1])
            ):
                if _add_sentence(out, text, seg_start, i + 1, par and first):
                    first = False
                seg_start = i + 1
        _add_sentence(out, text, seg_start, b_end, par and first)
    return out


def _add_sentence(out: list[Sentence], text: str, s: int, e: int, paragraph: bool) -> bool:
    raw = text[s:e]
    m = _LIST_MARKER.match(raw)
    item = False
    if m:
        s += m.end()
        item = True
        raw = text[s:e]
    lead = len(raw) - len(raw.lstrip())
    trail = len(raw) - len(raw.rstrip())
    s, e = s + lead, e - trail
    if e <= s:
        return False
    body = text[s:e]
    if not re.search(r"[A-Za-z]", body):
        return False
    out.append(Sentence(s, e, body, paragraph or item))
    return True


# ------------------------------------------------------------------ levels

_INTERSPACE = re.compile(
    rf"\b({_UPPER})\s*(?:-|/|\u2013|\u2014)\s*({_LOWER}|{_NUMBER})\b(?!\s*(?:mm|cm|%|years?))"
    rf"|\b({_compact(_UPPER)})({_compact(_LOWER)})\b",
    re.I,
)
# Words that name one interspace ("lumbosacral junction", "L/S junction"), from the level data.
_LEVEL_WORDS = [(re.compile(pattern, re.I), interspace) for pattern, interspace in report_junctions()]
_PAIR = re.compile(
    rf"\b({_compact(_UPPER)})\b(?:\s+[\w,]+){{0,4}}?\s+(?:on|over|relative\s+to)\s+({_compact(_LOWER)})\b", re.I
)
_SINGLE_SLIP = re.compile(
    r"\b(?:slip|listhesis|anterolisthesis|retrolisthesis|spondylolisthesis)\s+of\s+"
    rf"({_compact(_UPPER)})\b(?!\s+(?:on|over|relative))",
    re.I,
)


def _vert(name: str) -> str | None:
    name = re.sub(r"\s", "", name).upper()
    return name if name in VERTEBRAE else None


def _lower_of(upper: str, number: str) -> str:
    """The vertebra a bare number names after `upper` ("L4-5": L5, "C7-1": T1, "T12-1": L1): the first
    vertebra below `upper` with that number."""
    below = VERTEBRAE[VERTEBRAE.index(upper) + 1 :] if upper in VERTEBRAE else []
    return next((v for v in below if v[1:] == number), upper[0] + number)


def _span_levels(a: str, b: str) -> list[str]:
    """Interspaces from vertebra a down to vertebra b."""
    return between(a, b)


def _below(vertebra: str) -> list[str]:
    """The interspace under one vertebra ("slip of L4": L4-L5), or none for the lowest."""
    i = VERTEBRAE.index(vertebra)
    return between(vertebra, VERTEBRAE[i + 1]) if i + 1 < len(VERTEBRAE) else []


def _interspace(m: re.Match) -> list[str]:
    if m.group(3):
        a, b = _vert(m.group(3)), _vert(m.group(4))
    else:
        upper = re.sub(r"\s", "", m.group(1)).upper()
        lower = re.sub(r"\s", "", m.group(2)).upper()
        if lower.isdigit():
            lower = _lower_of(upper, lower)
        a, b = _vert(upper), _vert(lower)
    if a is None or b is None:
        return []
    return _span_levels(a, b)


# ------------------------------------------------------------------ tokens

_GRADE_WORD = (
    r"(?:minimal(?:ly)?|slight(?:ly)?|trace|mild(?:ly)?|minor|moderate(?:ly)?|mod|severe(?:ly)?|"
    r"marked(?:ly)?|high[- ]grade|critical(?:ly)?|advanced|sev|profound(?:ly)?)"
)


def _grade_of(word: str) -> str:
    w = word.lower().replace(" ", "-")
    if w.startswith(("minimal", "slight", "trace", "mild", "minor")):
        return "mild"
    if w.startswith("mod"):
        return "moderate"
    return "severe"


_TOKEN_SPECS: list[tuple[str, str]] = [
    # Narrowing of something that is not a canal: never a stenosis.
    (
        "NONSTEN",
        r"\b(?:disc|disk|joint|intervertebral)(?:\s+space)?(?:\s+height)?\s+(?:narrow\w*|loss)\b|\bnarrow(?:ing|ed)\s+(?:of\s+)?(?:the\s+)?(?:disc|disk|joint)\s+space\b",
    ),
    ("PROG", r"\bfrom\s+(" + _GRADE_WORD + r")\s+(?:to|into)\s+(" + _GRADE_WORD + r")\b"),
    ("CAP", r"\b(?:no|not)\s+more\s+than\b|\bat\s+most\b"),
    (
        "UNC",
        r"\bcan\s*not\s+(?:be\s+)?(?:excluded|exclude|ruled?\s+out)\b|\bcan'?t\s+(?:be\s+)?(?:excluded|exclude|rule\s+out)\b|"
        r"\bnot\s+(?:be\s+)?(?:excluded|ruled\s+out)\b|\bcannot\s+rule\s+out\b|\bpossibl[ey]\b|\bprobabl[ey]\b|"
        r"\bquestionabl[ey]\b|\bquestion\s+of\b|\bsuspect(?:ed)?\b|\bsuspicious\s+for\b|\bmay\s+(?:represent|reflect|be|indicate)\b|"
        r"\bmight\b|\bcould\s+(?:represent|be|reflect)\b|\bequivocal\b|\bindeterminate\b|\bborderline\b|"
        r"\bsuggest(?:s|ive\s+of|ing)?\b|\bversus\b|\bvs\.?(?=\s)|\blikely\b(?!\s+(?:due|related|secondary|from|reflect\w*|degenerative|positional|postoperative|chronic|post))|(?<![\w?])\?(?=\s)",
    ),
    (
        "PSEUDO",
        r"\b(?:no|without)\s+(?:interval\s+|significant\s+|substantial\s+|appreciable\s+)*(?:change|increase|progression|worsening|difference)\b|"
        r"\bnot\s+(?:significantly\s+|substantially\s+)?(?:changed|increased|progressed|worse(?:ned)?)\b|\bno\s+longer\s+\w+ed\s+to\b",
    ),
    ("RESOLVED", r"\bresolved\b|\bno\s+longer\s+(?:seen|present|evident|visible|narrowed|stenotic|identified)\b"),
    (
        "NEG",
        r"\bno\b|\bnot\b|\bwithout\b|\bnegative\s+for\b|\bfree\s+of\b|\babsence\s+of\b|\bnor\b|\bneither\b|\brather\s+than\b",
    ),
    (
        "POSTNEG",
        r"\bwidely\s+patent\b|\bpatent\b|\bunremarkable\b|\bnormal(?:ly)?\b|\bpreserved\b|\badequate\b|\bcapacious\b|\bwithin\s+normal\s+limits\b",
    ),
    ("REF", r"\bpreviously\s+(?:described|noted|seen|reported|demonstrated|identified|mentioned|visualized)\b"),
    (
        "HISTPOST",
        r"\bon\s+(?:the\s+)?(?:prior|previous|earlier|last)\s+(?:study|exam(?:ination)?|mri|ct|scan|imaging)\b",
    ),
    (
        "HIST",
        r"\bpreviously\b|\bformerly\b|\bprior\b|\bhad\s+been\b|\bcompared\s+(?:to|with)\b(?=\s+" + _GRADE_WORD + r")",
    ),
    ("NOW", r"\bnow\b|\bcurrently\b|\btoday\b|\bat\s+present\b|\bagain\b|\bremains\b"),
    (
        "BLOCK",
        rf"\b(?:remaining|other)\s+(?:(?:{_REGION_WORDS})\s+)?levels\b|\belsewhere\b|\bany\s+(?:other\s+)?level\b|\bevery\s+level\b|"
        r"\ball\s+(?:other\s+)?levels\b|\bmultiple\s+levels\b|\bmultilevel\b|\bother\s+levels?\b",
    ),
    (
        "GRADE",
        r"\bmild(?:ly)?\s*(?:-?\s*to\s*-?|-|/|\u2013)\s*moderate(?:ly)?\b|"
        r"\bmoderate(?:ly)?\s*(?:-?\s*to\s*-?|-|/|\u2013)\s*(?:severe(?:ly)?|marked(?:ly)?)\b|\bmod\s*-\s*sev(?:ere)?\b|\bmoderately\s+severe\b|"
        r"\b" + _GRADE_WORD + r"\b",
    ),
    ("MEYERDING", r"\b(?:meyerding\s+)?(?:grade|gr\.?)\s*(IV|V|I{1,3}|[1-5])\b(?!\s*(?:stenosis|narrowing))"),
    ("LISTHESIS", r"\b(?:antero|retro|spondylo)?listhesis\b|\banterior\s+slip(?:page)?\b|\bslip(?:page)?\b"),
    ("MM", r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:mm|millimet(?:er|re)s?)\b"),
    ("DEG", r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:\u00b0|degrees?\b|deg\b)"),
    ("TRANSL", r"\btranslat\w*|\bmotion\b|\bexcursion\b|\bmovement\b|\binstability\b|\bmoves\b"),
    ("ANGUL", r"\bangul\w*|\bangular\b"),
    ("DYN", r"\bflexion\b|\bextension\b|\bdynamic\b|\bflex\s*/\s*ext\b"),
    (
        "ASYM",
        r"\b[LR]\s*>\s*[LR]\b|\b(?:left|right)\s+(?:greater|worse)\s+than\s+(?:left|right)\b|"
        r"\b(?:worse|greater|more\s+pronounced|more\s+severe)\s+on\s+the\s+(?:left|right)\b",
    ),
    (
        "COMP",
        r"\bneuro-?foramin(?:al|a)\b|\bneural\s+foramin(?:al|a)\b|\bneural\s+foramen\b|\bforamin(?:al|a)\b|\bforamen\b|"
        r"\bBNF\b|\bNFN?\b|\blateral\s+recess(?:es)?\b|\bsubarticular(?:\s+(?:recess(?:es)?|zones?))?\b|"
        r"\bcentral\s+canal\b|\bspinal\s+canal\b|\bspinal\s+stenosis\b|\bthecal\s+sac\b|\bcanal\b|\bcentral\b|\bCCS\b",
    ),
    (
        "SIDE",
        r"\bbilateral(?:ly)?\b|\bboth\b|\bb/l\b|\bbilat\b\.?|\bleft\b|\bright\b|\blt\b|\brt\b|\b[LR]\b(?=\s+(?:NF|neural|foram|lateral))",
    ),
    (
        "STEN",
        r"\bstenos[ie]s\b|\bstenotic\b|\bnarrow(?:ing|ed|s)?\b|\bencroach(?:ment|es|ing)?\b|\bcompromis(?:e|ed|es|ing)\b",
    ),
    ("ANAPH", r"\b(?:at\s+)?(?:this|that|the\s+same)\s+(?:level|segment)\b"),
]
# Every token starts where no word character precedes it; testing that once per position, before the
# alternatives, rejects mid-word positions in one step (the same matches, a third less time).
_TOKEN_RE = re.compile(r"(?<!\w)(?:" + "|".join(f"(?P<{name}>{pattern})" for name, pattern in _TOKEN_SPECS) + ")", re.I)
_CLAUSE_BREAK = re.compile(r";|\bbut\b|\bhowever\b|\bwhereas\b|\balthough\b|\bthough\b|:(?!\s*$)", re.I)
_SEG_BREAK = re.compile(
    r",|\(|\)|&|\band\b|\bwith\b|\bresulting\s+in\b|\bcausing\b|\bwhich\b|\bthat\b|\bwhile\b|\bindicating\b|\bfollowing\b|\bdue\s+to\b",
    re.I,
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_FILLER = set(
    """a an the of at in on to is are be there this these those level levels both either its
              it s seen noted identified demonstrated appears appear appearing remains also each slightly
              which in of and or by from there's narrows narrow causing resulting results result
              about approximately roughly measuring measures measure up some""".split()
)
_DISC_WORDS = re.compile(
    r"^\s*(?:and\s+(?:left|right)\s+paracentral\s+|(?:left|right)\s+)?(?:disc|protrusion|herniation|extrusion|bulge|annular|fissure|tear|component|osteophyte)",
    re.I,
)


@dataclass
class Tok:
    kind: str
    start: int
    end: int
    text: str
    value: object = None


def tokenize(sentence: str) -> list[Tok]:
    toks: list[Tok] = []
    # covered[i] is 1 where a token already spans character i: an O(1) "is this inside a token?".
    covered = bytearray(len(sentence) + 1)

    def add(tok: Tok) -> None:
        toks.append(tok)
        covered[tok.start : tok.end] = b"\x01" * (tok.end - tok.start)

    for m in _INTERSPACE.finditer(sentence):
        names = [g for g in m.groups() if g]
        if all(_SEQUENCE_NAME.match(n) for n in names) and _SEQUENCE_AFTER.match(sentence, m.end()):
            continue  # "T1/T2 weighted": the MRI sequences, not the T1-T2 interspace
        levels = _interspace(m)
        if levels:
            add(Tok("LEVEL", m.start(), m.end(), m.group(0), levels))
    for pattern, interspace in _LEVEL_WORDS:
        for m in pattern.finditer(sentence):
            add(Tok("LEVEL", m.start(), m.end(), m.group(0), [interspace]))
    for m in _PAIR.finditer(sentence):
        a, b = _vert(m.group(1)), _vert(m.group(2))
        if a is not None and b is not None and _below(a) == between(a, b) != [] and not covered[m.start()]:
            add(Tok("LEVEL", m.start(), m.end(), m.group(0), _below(a)))
    for m in _SINGLE_SLIP.finditer(sentence):
        a = _vert(m.group(1))
        if a is not None and _below(a):
            add(Tok("LEVEL", m.start(1), m.end(1), m.group(1), _below(a)))
    for kind, role, pattern, needs in _PRESENCE_PATTERNS:
        for m in pattern.finditer(sentence):
            if 1 not in covered[m.start() : m.end()]:
                add(Tok("PRESENCE", m.start(), m.end(), m.group(0), (kind, role, needs)))
    taken = bytes(covered)  # the level and presence tokens: other tokens may not overlap them
    for m in _TOKEN_RE.finditer(sentence):
        if 1 in taken[m.start() : m.end()]:
            continue
        kind = m.lastgroup
        text = m.group(0)
        value: object = None
        if kind == "GRADE":
            w = text.lower()
            if re.match(r"mild", w) and re.search(r"moderate", w):
                value = "mild-moderate"
            elif re.search(r"mod", w) and re.search(r"sev|mark", w):
                value = "moderate-severe"
            else:
                value = _grade_of(w)
        elif kind == "PROG":
            pm = re.match(r"from\s+(.+?)\s+(?:to|into)\s+(.+)$", text, re.I)
            value = (_grade_of(pm.group(1)), _grade_of(pm.group(2)))
        elif kind == "MEYERDING":
            g = re.search(r"(IV|V|I{1,3}|[1-5])\s*$", text, re.I).group(1).upper()
            value = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5}.get(g) or int(g)
        elif kind in ("MM", "DEG"):
            value = float(re.match(r"\d+(?:\.\d+)?", text).group(0))
        elif kind == "SIDE":
            w = text.lower().rstrip(".")
            value = (
                "bilateral"
                if w.startswith(("bilat", "both", "b/l"))
                else "left"
                if w in ("left", "lt", "l")
                else "right"
            )
        elif kind == "COMP":
            w = text.lower()
            if "foram" in w or w.startswith(("nf", "bnf")):
                value = "foramen"
            elif "recess" in w or "subarticular" in w:
                value = "lateral-recess"
            else:
                value = "central"
            if w == "central" and _DISC_WORDS.match(sentence[m.end() :]):
                continue
        elif kind == "LISTHESIS":
            w = text.lower()
            value = "antero" if w.startswith(("antero", "anterior")) else "retro" if w.startswith("retro") else None
        add(Tok(kind, m.start(), m.end(), text, value))
    for m in _CLAUSE_BREAK.finditer(sentence):
        if not covered[m.start()]:
            add(Tok("CLAUSE", m.start(), m.end(), m.group(0)))
    for m in _SEG_BREAK.finditer(sentence):
        if not covered[m.start()]:
            add(Tok("SEG", m.start(), m.end(), m.group(0)))
    for m in _WORD.finditer(sentence):
        if not covered[m.start()]:
            add(Tok("WORD", m.start(), m.end(), m.group(0)))
    toks.sort(key=lambda t: (t.start, -t.end))
    return _join_lists(toks)


def _join_lists(toks: list[Tok]) -> list[Tok]:
    """Level lists and ranges ("L3-4, L4-5 and L5-S1", "L2-3 through L4-5") and side pairs become one token."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "LEVEL":
            levels = list(t.value)
            j = i + 1
            end = t.end
            while j < len(toks):
                k = j
                connector = None
                while k < len(toks) and (
                    toks[k].kind == "SEG"
                    and toks[k].text in (",", "and")
                    or toks[k].kind == "WORD"
                    and toks[k].text.lower() in ("and", "or", "at", "through", "thru", "to")
                    or toks[k].kind == "NEG"
                    and toks[k].text.lower() == "nor"
                ):
                    if toks[k].kind == "WORD" and toks[k].text.lower() in ("through", "thru", "to"):
                        connector = "range"
                    k += 1
                if k < len(toks) and toks[k].kind == "LEVEL" and k > j - 0:
                    nxt = toks[k].value
                    if connector == "range":
                        a = INTERSPACES.index(levels[-1])
                        b = INTERSPACES.index(nxt[0])
                        levels.extend(INTERSPACES[a + 1 : b])
                    levels.extend(nxt)
                    end = toks[k].end
                    j = k + 1
                else:
                    break
            out.append(Tok("LEVEL", t.start, end, t.text, [s for s in INTERSPACES if s in levels]))
            i = j
            continue
        if (
            t.kind == "SIDE"
            and t.value in ("left", "right")
            and i + 2 < len(toks)
            and toks[i + 1].text.lower() in ("and", "or")
            and toks[i + 2].kind == "SIDE"
            and toks[i + 2].value in ("left", "right")
            and toks[i + 2].value != t.value
        ):
            out.append(Tok("SIDE", t.start, toks[i + 2].end, "left and right", "bilateral"))
            i += 3
            continue
        out.append(t)
        i += 1
    return out


# ------------------------------------------------------------------ segments -> findings


@dataclass
class Segment:
    toks: list[Tok]
    clause: int
    levels: list[str] = field(default_factory=list)

    def kinds(self, kind: str) -> list[Tok]:
        return [t for t in self.toks if t.kind == kind]

    def has(self, kind: str) -> bool:
        return any(t.kind == kind for t in self.toks)

    def content_words(self) -> list[str]:
        return [t.text.lower() for t in self.toks if t.kind == "WORD" and t.text.lower() not in _FILLER]

    def bare(self) -> bool:
        """Only a grade (with side, level and cue words): "mild left", "previously severe", "mild at L3-4"."""
        return (
            (self.has("GRADE") or self.has("PROG"))
            and not self.has("COMP")
            and not self.has("STEN")
            and not self.has("LISTHESIS")
            and not self.has("PRESENCE")
            and not self.content_words()
        )


def _segments(toks: list[Tok]) -> list[Segment]:
    segs: list[Segment] = [Segment([], 0)]
    clause = 0
    for t in toks:
        if t.kind == "CLAUSE":
            clause += 1
            segs.append(Segment([], clause))
        elif t.kind == "SEG" or (t.kind == "NEG" and t.text.lower() == "without"):
            segs.append(Segment([], clause))
            if t.kind == "NEG":
                segs[-1].toks.append(t)
        else:
            segs[-1].toks.append(t)
    return [s for s in segs if s.toks]


@dataclass
class Context:
    """What a sentence inherits: header levels, levels of earlier sentences, a compartment label."""

    header_levels: list[str] | None = None
    last_levels: list[str] | None = None
    label_comp: str | None = None
    dynamic: bool = False


def _modality(seg: Segment, grade_tok: Tok | None) -> str:
    """present, negated, uncertain or historical for a segment's grade (or its absence)."""
    toks = seg.toks
    if seg.has("UNC"):
        return "uncertain"
    if grade_tok is not None:
        idx = toks.index(grade_tok)
        before = [
            t
            for t in toks[:idx]
            if not (
                t.kind == "WORD"
                and t.text.lower()
                in _FILLER | {"significant", "evidence", "definite", "appreciable", "focal", "residual"}
            )
        ]
        if before and before[-1].kind == "HIST":
            return "historical"
        if seg.has("HISTPOST") and not seg.has("NOW"):
            return "historical"
    return "present"


def _negated_grade(seg: Segment, grade_tok: Tok) -> bool | None:
    """True: a negation governs the grade ("no severe stenosis"); None: no negation before it."""
    idx = seg.toks.index(grade_tok)
    for t in reversed(seg.toks[:idx]):
        if t.kind == "CAP":
            return None
        if t.kind == "NEG":
            return True
    return None


def _finding_levels(segs: list[Segment], i: int, ctx: Context) -> list[str]:
    seg = segs[i]
    own = [lvl for t in seg.kinds("LEVEL") for lvl in t.value]
    if own:
        return own
    if seg.has("BLOCK"):
        return []
    for j in range(i - 1, -1, -1):
        if segs[j].levels:
            return segs[j].levels
    for j in range(i + 1, len(segs)):
        if segs[j].clause != seg.clause:
            break
        lv = [lvl for t in segs[j].kinds("LEVEL") for lvl in t.value]
        if lv:
            return lv
    if any(s.has("BLOCK") for s in segs[:i]):
        return []
    if ctx.header_levels:
        return ctx.header_levels
    return ctx.last_levels or []


def _comps(seg: Segment) -> list[tuple[str, str | None]]:
    """(compartment, side) pairs of a segment; a plural or both-sided compartment is bilateral."""
    out: list[tuple[str, str | None]] = []
    side = None
    for t in seg.toks:
        if t.kind == "SIDE":
            side = t.value
        if t.kind == "COMP":
            s = side
            w = t.text.lower()
            if w == "bnf":
                s = "bilateral"
            elif s is None and (w.endswith(("foramina", "recesses"))):
                s = "bilateral"
            out.append((t.value, s))
    if side is not None:
        # a side after the compartment ("foraminal stenosis bilaterally", "mild on the left")
        out = [(c, s or side) for c, s in out]
    merged: dict[str, str | None] = {}
    for c, s in out:
        if c in merged and merged[c] != s:
            merged[c] = merged[c] or s
        else:
            merged.setdefault(c, s)
    return list(merged.items())


def _weak_only(seg: Segment) -> bool:
    """Compartment words that say nothing about stenosis without a narrowing word: bare 'central', 'thecal sac'."""
    comps = seg.kinds("COMP")
    return bool(comps) and all(t.text.lower() in ("central", "thecal sac") for t in comps)


def _segment_side(seg: Segment) -> str | None:
    sides = [t.value for t in seg.kinds("SIDE")]
    return sides[0] if sides else None


def analyse_sentence(
    sent: Sentence, ctx: Context, section: str, source: str, pt: PlainText
) -> tuple[list[Finding], list[str]]:
    """Findings of one sentence and the levels it names (for carry-over)."""
    text = sent.text
    toks = tokenize(text)
    segs = _segments(toks)
    for i, seg in enumerate(segs):
        seg.levels = _finding_levels(segs, i, ctx)
    start, end = pt.source_span(sent.start, sent.end)
    quote = " ".join(text.split())
    base = dict(section=section, start=start, end=end, quote=quote, source=source)
    out: list[Finding] = []
    named = [lvl for t in toks if t.kind == "LEVEL" for lvl in t.value]

    # ---------------------------------------------------------------- stenosis
    for i, seg in enumerate(segs):
        comps = _comps(seg)
        grades = seg.kinds("GRADE")
        prog = seg.kinds("PROG")
        if not comps and ctx.label_comp and (grades or prog or seg.has("POSTNEG") or seg.has("STEN") or seg.has("NEG")):
            comps = [(ctx.label_comp, _segment_side(seg))]
        sten = seg.has("STEN") or ctx.label_comp is not None
        nxt = segs[i + 1] if i + 1 < len(segs) and segs[i + 1].clause == seg.clause else None
        prv = segs[i - 1] if i > 0 and segs[i - 1].clause == seg.clause else None
        if comps and _weak_only(seg) and not seg.has("STEN") and not ctx.label_comp:
            if not (nxt and nxt.has("STEN") and nxt.has("COMP")):
                if not (grades and nxt and nxt.has("STEN")):
                    comps = []
        if not comps and not sten and (grades or prog) and seg.bare():
            # "mild left and moderate right foraminal": borrow the compartment from the next segment,
            # else ("stenosis, previously severe, now moderate") from the nearest earlier one.
            if nxt is not None and nxt.has("COMP"):
                comps = [(c, _segment_side(seg)) for c, _ in _comps(nxt)]
                sten = True
            else:
                for j in range(i - 1, -1, -1):
                    if segs[j].has("COMP") or segs[j].has("STEN"):
                        side = _segment_side(seg)
                        comps = [(c, side or s) for c, s in _comps(segs[j])] or [(None, side)]
                        sten = True
                        break
        if not comps and not sten:
            continue
        if not comps:
            comps = [(None, _segment_side(seg))]
        levels = seg.levels
        if not levels:
            levels = [None]

        def emit(grade: str | None, status: str, comps=comps, levels=levels) -> None:
            for lvl in levels:
                for comp, side in comps:
                    out.append(Finding("stenosis", lvl, status, compartment=comp, side=side, grade=grade, **base))

        if prog:
            old, new = prog[0].value
            status = "uncertain" if seg.has("UNC") else "present"
            emit(new, status)
            emit(old, "historical")
            continue
        if grades:
            g = grades[0]
            if len(grades) > 1 and seg.has("UNC"):
                emit(None, "uncertain")
                continue
            if _negated_grade(seg, g):
                if RANK[g.value] >= RANK["moderate"]:
                    continue  # "no severe stenosis": the grade is denied, the stenosis is not
                emit("none", "negated")
                continue
            status = _modality(seg, g)
            emit(g.value, status)
            if status == "historical" and seg.has("RESOLVED"):
                emit("none", "negated")
            continue
        # No grade of its own.
        neg = seg.has("NEG") or seg.has("POSTNEG") or seg.has("RESOLVED")
        if seg.has("PSEUDO") and not seg.has("POSTNEG"):
            neg = False
        if neg and not seg.has("CAP"):
            emit("none", "uncertain" if seg.has("UNC") else "negated")
            continue
        if prv is not None and not seg.has("NEG"):
            # "Moderate central and bilateral lateral recess stenosis", "no central canal or lateral recess stenosis"
            pg = prv.kinds("GRADE")
            if pg and (not prv.has("STEN") or not seg.has("STEN")) and not seg.content_words():
                if _negated_grade(prv, pg[0]) and RANK[pg[0].value] >= RANK["moderate"]:
                    continue
                if _negated_grade(prv, pg[0]):
                    emit("none", "negated")
                else:
                    emit(pg[0].value, _modality(prv, pg[0]))
                continue
            if (
                (prv.has("NEG") or prv.has("POSTNEG"))
                and not prv.has("STEN")
                and not prv.kinds("GRADE")
                and not seg.content_words()
            ):
                emit("none", "negated")
                continue
        if nxt is not None and not seg.has("STEN") and not seg.content_words() and nxt.has("COMP"):
            # "The spinal canal and neural foramina are patent", "the canal and foramina are mildly narrowed"
            ng = nxt.kinds("GRADE")
            if ng and not _negated_grade(nxt, ng[0]):
                emit(ng[0].value, _modality(nxt, ng[0]))
                continue
            if not ng and (nxt.has("POSTNEG") or nxt.has("NEG")) and not nxt.has("PSEUDO"):
                emit("none", "negated")
                continue
        emit(None, "uncertain" if seg.has("UNC") else "present")

    # ---------------------------------------------------------------- presence findings
    out.extend(_presence_findings(text, segs, base))

    # ---------------------------------------------------------------- spondylolisthesis
    dynamic_sentence = any(t.kind == "DYN" for t in toks)
    for i, seg in enumerate(segs):
        nouns = seg.kinds("LISTHESIS")
        if not nouns:
            continue
        noun = nouns[0]
        direction = next((t.value for t in nouns if t.value), None)
        if direction is None and re.search(r"\banterior(?:ly)?\b", " ".join(t.text for t in seg.toks), re.I):
            direction = "antero"
        if direction is None and re.search(r"\bposterior(?:ly)?\b", " ".join(t.text for t in seg.toks), re.I):
            direction = "retro"
        idx = seg.toks.index(noun)
        negated = any(t.kind == "NEG" for t in seg.toks[:idx])
        status = "negated" if negated else "uncertain" if seg.has("UNC") else "present"
        grade = next((t.value for t in seg.kinds("MEYERDING")), None)
        mm = None
        if not dynamic_sentence and not ctx.dynamic:
            mms = seg.kinds("MM")
            if not mms:
                for nxt in segs[i + 1 :]:
                    if nxt.clause != seg.clause or nxt.has("LISTHESIS") or nxt.has("COMP"):
                        break
                    if nxt.has("MM") and not nxt.content_words():
                        mms = nxt.kinds("MM")
                        break
            mm = mms[0].value if mms else None
        for lvl in seg.levels or [None]:
            out.append(
                Finding(
                    "listhesis",
                    lvl,
                    status,
                    slip_grade=grade if not negated else None,
                    direction=direction,
                    mm=mm if not negated else None,
                    **base,
                )
            )

    # ---------------------------------------------------------------- flexion-extension motion
    if dynamic_sentence or ctx.dynamic:
        computed = _computed_translation(text)
        explicit = False
        for seg in segs:
            if seg.has("TRANSL"):
                mms = [
                    t
                    for t in seg.kinds("MM")
                    if not re.search(r"(?:less\s+than|<|under|up\s+to|below)\s*$", text[: t.start], re.I)
                ]
                if any(t.kind == "NEG" for t in seg.toks) and not mms:
                    for lvl in seg.levels or [None]:
                        out.append(Finding("translation", lvl, "negated", **base))
                    explicit = True
                    continue
                if mms:
                    explicit = True
                    status = "uncertain" if seg.has("UNC") else "present"
                    for lvl in seg.levels or [None]:
                        out.append(Finding("translation", lvl, status, mm=mms[-1].value, **base))
            if seg.has("ANGUL") and seg.has("DEG") and "cobb" not in seg.content_words():
                status = "uncertain" if seg.has("UNC") else "present"
                for lvl in seg.levels or [None]:
                    out.append(Finding("angulation", lvl, status, deg=seg.kinds("DEG")[0].value, **base))
        if computed is not None and not explicit:
            levels = next((s.levels for s in segs if s.levels), None) or [None]
            for lvl in levels:
                out.append(Finding("translation", lvl, "present", mm=computed, **base))
    return out, named


_DENIED_INSIDE = re.compile(r"\b(?:not|no)\b", re.I)
_NORMAL_INSIDE = re.compile(r"\b(?:normal|preserved|unremarkable|within\s+normal\s+limits)\b", re.I)


def _presence_findings(text: str, segs: list[Segment], base: dict) -> list[Finding]:
    """Presence findings of one sentence (data/report_text.json), one per kind and level and status.

    A hedge anywhere in the clause makes the statement uncertain; an affirming statement is denied by
    a negation in its segment ("without cord compression", "no myelomalacia", "the cord is not
    compressed"); a subject ("cord signal") gives a finding only when the segment calls it normal. A
    prior statement is historical unless the clause says it is seen now; a resolved one is historical and
    denied.
    """
    out: list[Finding] = []
    seen: set[tuple] = set()
    for seg in segs:
        tokens = seg.kinds("PRESENCE")
        if not tokens:
            continue
        clause = [s for s in segs if s.clause == seg.clause]
        seg_text = text[seg.toks[0].start : seg.toks[-1].end]
        for t in tokens:
            kind, role, needs = t.value
            if needs is not None and not needs.search(seg_text):
                continue
            statuses: list[str]
            if any(s.has("UNC") for s in clause):
                statuses = ["uncertain"]
            elif role == "subject":
                if not (seg.has("POSTNEG") or _NORMAL_INSIDE.search(t.text)):
                    continue
                statuses = ["negated"]
            elif seg.has("NEG") or _DENIED_INSIDE.search(t.text):
                statuses = ["negated"]
            else:
                idx = seg.toks.index(t)
                before = [x for x in seg.toks[:idx] if not (x.kind == "WORD" and x.text.lower() in _FILLER)]
                now = any(s.has("NOW") for s in clause)
                prior = (bool(before) and before[-1].kind in ("HIST", "REF") or seg.has("HISTPOST")) and not now
                if seg.has("RESOLVED"):
                    statuses = ["historical", "negated"]
                else:
                    statuses = ["historical"] if prior else ["present"]
            for lvl in seg.levels or [None]:
                for status in statuses:
                    if (kind, lvl, status) not in seen:
                        seen.add((kind, lvl, status))
                        out.append(Finding(kind, lvl, status, **base))
    return out


_FLEX_EXT = re.compile(
    r"(\d+(?:\.\d+)?)\s*mm\s+(?:in|on)\s+(?:the\s+)?(extension|flexion|neutral)\b[^.;]*?\b(?:and|to)\s+(\d+(?:\.\d+)?)\s*mm\s+(?:in|on)\s+(?:the\s+)?(extension|flexion)\b",
    re.I,
)


def _computed_translation(text: str) -> float | None:
    """ "measures 3 mm in extension and 7 mm in flexion" -> 4 mm of translation."""
    m = _FLEX_EXT.search(text)
    if not m or m.group(2).lower() == m.group(4).lower():
        return None
    return round(abs(float(m.group(3)) - float(m.group(1))), 1)


# ------------------------------------------------------------------ one source text

_HEADER = re.compile(
    rf"^(?:at\s+)?((?:{_LEVEL_HEAD}|{_JUNCTION_HEAD})"
    rf"(?:\s*(?:,|and|to|through|thru|-)\s*{_LEVEL_HEAD})*)(?:\s+(?:level|interspace|disc\s+level))?\s*:\s*",
    re.I,
)
_LABEL = re.compile(r"^([A-Za-z][A-Za-z /&-]{1,40}?)\s*:\s*")
_COMP_LABELS = {
    "central canal": "central",
    "canal": "central",
    "spinal canal": "central",
    "thecal sac": "central",
    "neural foramina": "foramen",
    "foramina": "foramen",
    "neural foramen": "foramen",
    "foramen": "foramen",
    "neuroforamina": "foramen",
    "lateral recesses": "lateral-recess",
    "lateral recess": "lateral-recess",
    "subarticular recesses": "lateral-recess",
    "subarticular zones": "lateral-recess",
}
_RESET_LABELS = re.compile(
    r"^(?:alignment|vertebrae|vertebral\s+bodies|bones?|bone\s+marrow|marrow|conus(?:\s+medullaris)?|cord|"
    r"paraspinal.*|soft\s+tissues?|other(?:\s+levels)?|others|remaining\s+levels|visualized.*|sacrum|"
    r"sacroiliac.*|si\s+joints|kidneys|retroperitoneum|lower\s+thoracic.*|upper\s+lumbar.*|"
    r"additional\s+findings|incidental.*|hardware|postoperative.*)$",
    re.I,
)
_DYNAMIC_REPORT = re.compile(
    r"\bflexion\b.{0,80}\bextension\b|\bextension\b.{0,80}\bflexion\b|\bflex\s*/\s*ext\b|\bdynamic\s+views\b",
    re.I | re.S,
)


def is_dynamic(text: str) -> bool:
    """Does the text describe flexion-extension (dynamic) views?"""
    return bool(_DYNAMIC_REPORT.search(text))


def extract_text(
    content: str,
    content_type: str | None = None,
    source: str = "",
    default_section: str = "findings",
    dynamic: bool | None = None,
) -> list[Finding]:
    """Findings of one source text, in reading order, before the report-level rules."""
    pt = plain_text(content, content_type)
    text = pt.text
    if dynamic is None:
        dynamic = is_dynamic(text)
    out: list[Finding] = []
    for kind, s, e in sections(text, default_section):
        if kind == "other":
            continue
        ctx = Context(dynamic=dynamic)
        line_of_label = -1
        for sent in sentences(text, s, e):
            body_start = sent.start
            body = sent.text
            if sent.paragraph_start:
                ctx.header_levels = None
                ctx.last_levels = None
            line_no = text.count("\n", 0, sent.start)
            if line_no != line_of_label:
                ctx.label_comp = None
            m = _HEADER.match(body)
            if m:
                levels = [lvl for t in tokenize(m.group(1)) if t.kind == "LEVEL" for lvl in t.value]
                ctx.header_levels = levels or None
                ctx.last_levels = None
                body_start += m.end()
                body = body[m.end() :]
            lm = _LABEL.match(body)
            if lm:
                label = lm.group(1).strip().lower()
                if _RESET_LABELS.match(label):
                    ctx.header_levels = None
                    ctx.last_levels = None
                elif label in _COMP_LABELS:
                    ctx.label_comp = _COMP_LABELS[label]
                    line_of_label = line_no
            if not body.strip():
                continue
            part = Sentence(body_start, sent.end, body)
            findings, named = analyse_sentence(part, ctx, kind, source, pt)
            # The quote is the whole sentence, header included.
            start, end = pt.source_span(sent.start, sent.end)
            quote = " ".join(sent.text.split())
            out.extend(replace(f, start=start, end=end, quote=quote) for f in findings)
            if named and not ctx.header_levels:
                ctx.last_levels = named
    return out


# ------------------------------------------------------------------ report-level rules


def _sides_overlap(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b or "bilateral" in (a, b)


def _richness(f: Finding) -> int:
    return sum(v is not None for v in (f.slip_grade, f.direction, f.mm))


def resolve(findings: list[Finding]) -> list[Finding]:
    """Report-level rules, in order:

    1. identical findings (same kind, level, compartment, side, value, status) collapse to the first;
    2. the impression wins: a findings-section grade or measurement that the impression contradicts
       at the same level (and compartment and side, for stenosis) is dropped and recorded in the
       impression finding's `superseded`; one it repeats is dropped as a duplicate;
    3. an ungraded stenosis mention yields to a graded statement at the same level and compartment.
    """
    seen: set[tuple] = set()
    unique: list[Finding] = []
    for f in findings:
        k = (f.key(), f.value(), f.status, f.section)
        if k in seen:
            continue
        seen.add(k)
        unique.append(f)
    imp = [f for f in unique if f.section == "impression"]
    kept: list[Finding] = [f for f in unique if f.section != "findings"]
    superseded: dict[int, list[Finding]] = {}
    for f in unique:
        if f.section != "findings":
            continue
        winner = _overruled_by(f, imp)
        if winner is None:
            kept.append(f)
        elif winner is not True:
            superseded.setdefault(id(winner), []).append(f)
    kept_ids = {id(f) for f in kept}
    ordered = [f for f in unique if id(f) in kept_ids]
    ordered = [replace(f, superseded=tuple(superseded[id(f)])) if id(f) in superseded else f for f in ordered]
    graded = {(f.level, f.compartment) for f in ordered if f.kind == "stenosis" and f.grade is not None}
    ordered = [
        f
        for f in ordered
        if not (
            f.kind == "stenosis" and f.grade is None and f.status == "present" and (f.level, f.compartment) in graded
        )
    ]
    # Non-conflicting duplicate slips: keep the richer statement (impression on a tie).
    best: dict[str, Finding] = {}
    for f in ordered:
        if f.kind == "listhesis" and f.status == "present" and f.level:
            cur = best.get(f.level)
            if cur is None or _richness(f) > _richness(cur):
                best[f.level] = f
    ordered = [
        f
        for f in ordered
        if not (f.kind == "listhesis" and f.status == "present" and f.level and best[f.level] is not f)
    ]
    # A finding needs a level to be of use; only a denial without one is kept ("No listhesis.").
    return [f for f in ordered if f.level is not None or (f.status == "negated" and f.kind != "stenosis")]


def _overruled_by(f: Finding, imp: list[Finding]):
    """None: keep f; True: f repeats the impression; a Finding: the impression finding that overrules f."""
    if f.status not in CERTAIN or f.level is None:
        return None
    same_level = [i for i in imp if i.kind == f.kind and i.level == f.level and i.status in CERTAIN]
    if not same_level:
        return None
    if f.kind == "stenosis":
        if f.grade is None:
            return None
        graded = [i for i in same_level if i.grade is not None]
        exact = [
            i
            for i in graded
            if f.compartment is not None and i.compartment == f.compartment and _sides_overlap(i.side, f.side)
        ]
        if exact:
            match = [i for i in exact if i.grade == f.grade]
            return True if match else exact[0]
        if f.compartment is None:
            if not graded:
                return None
            top = max(graded, key=lambda i: RANK[i.grade])
            if RANK[f.grade] > RANK[top.grade]:
                return top
            same = [i for i in graded if i.compartment is None and i.grade == f.grade]
            return True if same else None
        summary = [i for i in graded if i.compartment is None]
        if summary:
            top = max(summary, key=lambda i: RANK[i.grade])
            if RANK[f.grade] > RANK[top.grade]:
                return top
        return None
    if f.kind in PRESENCE_KINDS:
        # The impression's statement at the level wins: the same status repeats it, another overrules it.
        return True if any(i.status == f.status for i in same_level) else same_level[0]
    if f.kind == "listhesis":
        i = same_level[0]
        conflict = (f.slip_grade is not None and i.slip_grade is not None and f.slip_grade != i.slip_grade) or (
            f.direction is not None and i.direction is not None and f.direction != i.direction
        )
        if conflict:
            return i
        return None  # duplicates are collapsed to the richer statement afterwards
    values = [i for i in same_level if i.value() is not None]
    if not values or f.value() is None:
        return True if values or f.value() is None else None
    match = [i for i in values if i.value() == f.value()]
    return True if match else values[0]


def extract_report(parts: list[tuple[str, str, str | None, str]], dynamic: bool = False) -> list[Finding]:
    """Findings of one report from its parts: (source name, text, content type, default section).

    The conclusion is read as impression; a presentedForm starts as findings until a header says
    otherwise. Parts are read in the order given, and the first statement of a duplicate is kept.
    A report is dynamic (translation and angulation are read in every sentence) when the caller
    says so (its code names flexion-extension views) or any part describes such views.
    """
    texts = [(source, text[:MAX_CHARS], content_type, default) for source, text, content_type, default in parts]
    dynamic = dynamic or any(is_dynamic(plain_text(t, ct).text) for _, t, ct, _ in texts)
    found: list[Finding] = []
    for source, text, content_type, default in texts:
        found.extend(extract_text(text, content_type, source, default, dynamic))
    return resolve(found)
