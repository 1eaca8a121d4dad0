"""Facts a payer asks about, read from clinical-note text by explicit rules.

Reads the text of a clinical note (FHIR R4 DocumentReference attachment: plain text, or HTML turned
into text by the report reader's HTML-to-text) and returns facts of six types, as
eval/note_text/README.md defines them: physical-therapy attendance (sessions, dates, weeks, body
region, status), other conservative care, nicotine status (product, current/former/never, quit date),
medication trials (drug, dates, dose, outcome), symptom onset or duration, and red flags. Every fact
carries an assertion (present, negated, hedged, historical, family, planned), the words that carry it
and the sentence, with character offsets. No model, no network, no randomness: the same text always
gives the same facts, and docs/note-text.md explains every rule.

Pipeline for one note: text -> lines -> sentences -> clauses (";", "|", a run of spaces, "but") ->
per type, trigger words found in each clause -> the assertion from cue words around the trigger ->
the type's fields from the clause, the sentence and, for a therapy note, its header lines.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from cds_hooks.spine.report_text import plain_text
from cds_hooks.spine.note_dates import as_months, as_weeks, find_dates, find_length, months_before, number

TYPES = ("pt-attendance", "conservative-care", "nicotine", "medication-trial", "symptom-duration", "red-flag")
ASSERTIONS = ("present", "negated", "hedged", "historical", "family", "planned")
# Longest text read per note; longer text is cut (a progress note is a few kB).
MAX_CHARS = 200_000
# How far after a PT sentence its outcome (discharge reason, status) is looked for.
FOLLOWING_CHARS = 400

# Neuropathic agents: the drugs whose trial a pack may ask for by class (gabapentinoids, SNRIs, TCAs).
NEUROPATHIC = {
    "gabapentin",
    "pregabalin",
    "duloxetine",
    "venlafaxine",
    "milnacipran",
    "amitriptyline",
    "nortriptyline",
    "desipramine",
}


@dataclass
class NoteFact:
    """One thing a note says, where it says it, and how it is asserted."""

    type: str
    assertion: str
    start: int  # offsets of the words that carry the fact, in the text read
    end: int
    sentence_start: int  # offsets of the sentence
    sentence_end: int
    quote: str  # the sentence, whitespace collapsed
    fields: dict = field(default_factory=dict)

    def get(self, name: str):
        return self.fields.get(name)

    def as_dict(self) -> dict:
        return {
            "type": self.type,
            **self.fields,
            "assertion": self.assertion,
            "span_start": self.start,
            "span_end": self.end,
            "quote": self.quote,
        }


# ------------------------------------------------------------------ text


def note_plain_text(content: str, content_type: str | None = None) -> str:
    """The text to read: HTML (by content type, or markup in untyped text) through the report reader's
    HTML-to-text (spine/report_text.py: tags out, entities decoded, blocks and table rows as lines)."""
    read = plain_text(content[:MAX_CHARS], content_type)
    if read.origin is None:  # not HTML: the note's own text, offsets unchanged
        return read.text
    text = read.text.replace("\xa0", " ")
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


# ------------------------------------------------------------------ sentences and clauses


@dataclass(frozen=True)
class Clause:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    line: int  # index of the line it sits on
    clauses: tuple[Clause, ...]


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9+\-])")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|vs|approx|e\.g|i\.e)\.|\b[A-Z]\.)$")
_CLAUSE_BREAK = re.compile(
    r";|\s\|\s|\s{2,}|,?\s+\bbut\b\s+|\s+\bthough\b\s+|,\s+(?=now\b)|(?<=\w)\s+-\s+(?=[a-z])|,\s+(?=which\b)|"
    r"\s+and\s+(?=(?:has|have|had|is|was|did|does)\s+not\b)"
)


def sentences(text: str) -> list[Sentence]:
    out: list[Sentence] = []
    pos = 0
    for n, line in enumerate(text.split("\n")):
        start = pos
        pos += len(line) + 1
        if not line.strip():
            continue
        cuts = [0]
        for m in _SENTENCE_END.finditer(line):
            if _ABBREV.search(line[: m.start()]):
                continue
            cuts.append(m.end())
        cuts.append(len(line))
        for a, b in zip(cuts, cuts[1:]):
            piece = line[a:b]
            lead = len(piece) - len(piece.lstrip())
            s, e = start + a + lead, start + a + len(piece.rstrip())
            if e <= s:
                continue
            stext = text[s:e]
            clauses = []
            c0 = 0
            for m in _CLAUSE_BREAK.finditer(stext):
                if m.start() > c0:
                    clauses.append(Clause(s + c0, s + m.start(), stext[c0 : m.start()]))
                c0 = m.end()
            if c0 < len(stext):
                clauses.append(Clause(s + c0, e, stext[c0:]))
            out.append(Sentence(s, e, stext, n, tuple(clauses)))
    return out


def _clause_at(sentence: Sentence, pos: int) -> Clause:
    for c in sentence.clauses:
        if c.start <= pos < c.end:
            return c
    return Clause(sentence.start, sentence.end, sentence.text)


# ------------------------------------------------------------------ assertion cues

_RELATIVE = re.compile(
    r"\b(?:father|mother|dad|mom|brother|sister|siblings?|son|daughter|son-in-law|daughter-in-law|husband|wife|"
    r"spouse|partner|parents?|grand(?:father|mother|parent)s?|aunt|uncle|cousin|relatives?|roommate)\b",
    re.I,
)
_SELF = re.compile(r"\b(?:pt|patient|she|he|herself|himself)\b", re.I)
_FAMILY_SECTION = re.compile(r"^\s*(?:family\s+history|FHx|FH)\s*:?\s*$", re.I)
_FAMILY_INLINE = re.compile(r"\b(?:FHx|FH|family\s+history)\s*:", re.I)
_SECTION_HEADER = re.compile(r"^\s*[A-Z][A-Z /&]{3,}:?\s*$")

_HEDGE_BEFORE = re.compile(
    r"(?:\br/o|\brule\s+out|\bto\s+rule\s+out|\bpossible|\bprobable|\bsuspected|\bconcern(?:ed)?\s+(?:for|about)|"
    r"\bworried\s+about|\blook\s+for|\bevaluate\s+for|\bquestionable|\bmay\s+have(?:\s+had)?|\bmight|\?\s*$|"
    r"\bcannot\s+exclude|\bdifferential)",
    re.I,
)
_NEG_CLAUSE = re.compile(
    r"\b(?:denies|denied|negative\s+for|neg\s+for|no\s+red\s+flag\s+\w+|free\s+of|absence\s+of)\b", re.I
)
_NEG_NEAR = re.compile(
    r"(?:\bno\b|\bnot\b|\bnever\b|\bnor\b|(?:^|[,:;])\s*-\s*|\bhas\s+not\b|\bhasn't\b|\bdid\s+not\b)", re.I
)
_NEG_STOP = re.compile(
    r"\b(?:but|although|however|has|have|had|is|was|reports?|now|given|so|which|with|since)\b|[.;:]", re.I
)
_HISTORICAL = re.compile(
    r"\b(?:hx|h/o|history\s+of|remote|treated|healed|cured|in\s+remission|no\s+recurrence|resolved|as\s+a\s+child|"
    r"unchanged|since\s+childbirth|at\s+that\s+time|previously|prior)\b",
    re.I,
)
_PLANNED = re.compile(
    r"\b(?:plan(?:ned)?|recommend(?:ed|s)?|referr?(?:ed|al)|refer|will|would|consider(?:ing)?|discuss(?:ed)?|talked\s+about|"
    r"to\s+start|start\s+(?=\w)|hoping\s+to|request(?:ed)?|schedule|asked\s+(?:him|her|them)\s+to|advise[ds]?|"
    r"pending)\b",
    re.I,
)
_INSTRUCTION = re.compile(
    r"\b(?:return\s+precautions|call\s+911|go\s+to\s+the\s+(?:ER|ED)|educated|education|warning\s+signs|"
    r"when\s+to\s+go|handout|if\s+(?:you|symptoms))\b",
    re.I,
)


def _family(
    text: str, sentence: Sentence, lines: list[str], family_lines: set[int], term_start: int, clause: Clause
) -> bool:
    if sentence.line in family_lines:
        return True
    # "FHx: father - prostate cancer; mother - ..." : an inline family-history label before the term.
    line_start = text.rfind("\n", 0, term_start) + 1
    inline = _FAMILY_INLINE.search(text, line_start, term_start)
    if inline:
        return True
    before = text[clause.start : term_start]
    rel = list(_RELATIVE.finditer(before))
    if not rel:
        return False
    return not _SELF.search(before[rel[-1].end() :])


_UNTICKED = re.compile(r"\[\s\]\s*[\w-]*\s*$")


def _negated_before(before: str) -> bool:
    """A negation cue before the term that still reaches it (no verb or stop word in between)."""
    if _NEG_CLAUSE.search(before):
        return True
    for m in _NEG_NEAR.finditer(before):
        gap = before[m.end() :]
        if len(gap) <= 60 and not _NEG_STOP.search(gap):
            return True
    return False


# ------------------------------------------------------------------ the reader


@dataclass
class _Note:
    text: str
    date: dt.date
    sents: list[Sentence]
    lines: list[str]
    family_lines: set[int]

    def dates(self, s: str):
        return find_dates(s, self.date)


def _prepare(text: str, note_date: dt.date) -> _Note:
    lines = text.split("\n")
    family_lines: set[int] = set()
    in_family = False
    for i, line in enumerate(lines):
        if _FAMILY_SECTION.match(line):
            in_family = True
            continue
        if in_family and (_SECTION_HEADER.match(line) or not line.strip()):
            in_family = False
        if in_family:
            family_lines.add(i)
    return _Note(text, note_date, sentences(text), lines, family_lines)


def extract_note(text: str, note_date: dt.date | str, content_type: str | None = "text/plain") -> list[NoteFact]:
    """Every fact of the note, ordered by position. `note_date` resolves relative dates."""
    if isinstance(note_date, str):
        note_date = dt.date.fromisoformat(note_date[:10])
    text = note_plain_text(text, content_type)
    note = _prepare(text, note_date)
    facts: list[NoteFact] = []
    facts += _pt_facts(note)
    facts += _care_facts(note, facts)
    facts += _nicotine_facts(note)
    facts += _medication_facts(note)
    facts += _symptom_facts(note)
    facts += _red_flag_facts(note)
    return sorted(facts, key=lambda f: (f.start, TYPES.index(f.type)))


def _first_of_each(facts: list[NoteFact], key) -> list[NoteFact]:
    """The first fact of each key, in order (one mention counted once)."""
    seen, out = set(), []
    for f in facts:
        k = key(f)
        if k not in seen:
            seen.add(k)
            out.append(f)
    return out


def _fact(
    note: _Note, type_: str, assertion: str, span_start: int, span_end: int, sentence: Sentence, **fields
) -> NoteFact:
    return NoteFact(
        type_, assertion, span_start, span_end, sentence.start, sentence.end, " ".join(sentence.text.split()), fields
    )


# ------------------------------------------------------------------ body regions

_REGIONS = [
    (name, re.compile(p, re.I))
    for name, p in (
        (
            "lumbar",
            r"\b(?:lumbar|lumbosacral|thoracolumbar|low(?:er)?\s+back|L/S\s+spine|LBP|lumbago|sciatica|(?:his|her|the|their|for)\s+back|back\s+pain|"
            r"L[1-5](?:-[1-5S])?\s+(?:radiculopathy|ESI)|L[1-5]-(?:L?[1-5]|S1)|DDD|M54\.[14]\d?|M54\.5\d?|M48\.06\d?|M51\.[123]6|M51\.[123]7)\b",
        ),
        ("cervical", r"\b(?:cervical|neck|C[2-7](?:-[3-7T])?\s+radiculopathy|\(C[2-8]\))"),
        ("thoracic", r"\bthoracic\b"),
        ("knee", r"\bknee\b"),
        ("shoulder", r"\bshoulder\b"),
        ("hip", r"\bhip\b"),
        ("other", r"\b(?:pelvic\s+floor|deconditioning)\b"),
    )
]


def region_of(text: str) -> str | None:
    """The first body region the text names, by position."""
    best: tuple[int, str] | None = None
    for name, p in _REGIONS:
        m = p.search(text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return best[1] if best else None


# ------------------------------------------------------------------ physical therapy

_PT_WORD = re.compile(r"\b(?:PT|physical\s+therapy|physiotherapy|aquatic\s+therapy|McKenzie[\w-]*\s+PT|therapy)\b")
_PT_WORD_I = re.compile(r"\b(?:physical\s+therapy|physiotherapy|aquatic\s+therapy|land-based\s+PT)\b", re.I)
_OTHER_CARE_IN_CLAUSE = re.compile(r"\b(?:acupuncture|chiropract\w*|adjustments|massage|injections?|ESI)\b", re.I)
_THERAPY_NOTE = re.compile(
    r"^\s*(?:(?:outpatient\s+)?(?:PT|physical\s+therapy|rehab)\b.*\b(?:discharge|re-?eval\w*|progress|summary|note)|"
    r"visit\s*#|daily\s+treatment\s+note|PT\s+DISCHARGE|discharge\s+(?:from\s+)?(?:aquatic\s+|physical\s+)?therapy|"
    r"(?:outpatient\s+)?rehab\b.*\bdischarge|discharge\s+note|d/c\s+summary)",
    re.I,
)
_DX_FIELD = re.compile(
    r"\b(?:diagnosis|dx|referring\s+dx|body\s+region|region(?:\s+treated)?|body\s+part)\s*:\s*([^\n]*)", re.I
)
# A first line that only names the service and the kind of note ("Physical therapy - discontinued").
_PT_TITLE = re.compile(
    r"^\s*(?:discharge\s+(?:from\s+)?)?(?:outpatient\s+)?(?:(?-i:PT)|physical\s+therapy|aquatic\s+therapy|rehab)"
    r"(?:\s*[-–:|]\s*[\w\s/]{0,25})?[.:]?\s*$",
    re.I,
)

_COUNT_PATTERNS = [
    re.compile(p, re.I)
    for p in (
        r"\bhas\s+been\s+to\s+(?P<a>\d+)\b",
        r"^\s*attended\s*:\s*(?P<a>\d+)\b",
        r"^\s*(?:A\s*:\s*)?visit\s+(?P<a>\d+)\s*\.?\s*$",
        r"(?P<a>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|eighteen|twenty)\s*(?:of|/)\s*(?P<p>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|eighteen|twenty)\s+(?:authorized\s+|scheduled\s+|planned\s+|prescribed\s+)?(?:visits|sessions)",
        r"\battended\s+(?P<a>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|eighteen|twenty)\s+of\s+(?P<p>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|eighteen|twenty)",
        r"\bvisits\s*:\s*(?P<a>\d+)\s+attended\s*/\s*(?P<p>\d+)",
        r"\(\s*visit\s+(?P<a>\d+)\s*\)",
        r"\bvisits?\s+attended\s*:\s*(?P<a>\d+|_+)\s*/\s*(?P<p>\d+)",
        r"\bvisit\s+(?P<a>\d+)\s+of\s+(?P<p>\d+)\b",
        r"\bauth\s*:\s*(?P<a>\d+)\s*/\s*(?P<p>\d+)\s+used",
        r"(?<!remaining\s)\b(?:total\s+visits|visits\s+to\s+date|#\s*visits|visits)\s*:\s*(?P<a>\d+)",
        r"\bvisit\s*#\s*:?\s*(?P<a>\d+)",
        r"\btreatment\s+note\s*#\s*(?P<a>\d+)",
        r"\b(?:initial\s+)?evaluation\b[^.]*?\b(?:and|plus)\s+(?P<f>\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:follow-up|treatment)\s+(?:visits|sessions)",
        r"(?:~\s*|approximately\s+|about\s+)?(?<!remaining\s)(?P<a>\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fourteen|sixteen)(?:-\d+)?\s+(?:PT\s+|physical\s+therapy\s+|therapy\s+|outpatient\s+)?(?:visits|sessions)\b",
        r"\bPT\s+x\s*(?P<a>\d+)\s+sessions",
        r"\battended\s+(?P<all>all)\s+visits",
        r"\(\s*(?P<a>\d+)\s+visits\s*[,)]",
    )
]
_STATUS = [
    (
        "not-tolerated",
        re.compile(
            r"\bnot\s+tolerated\b|\bstopped\s+due\s+to\s+(?:increased\s+)?\w*\s*pain|\bpain\s+too\s+severe\b|"
            r"\bdid\s+not\s+tolerate\b",
            re.I,
        ),
    ),
    ("completed", re.compile(r"\bcompleted?\b|\battended\s+all\b|\bfinished\b", re.I)),
    (
        "discontinued",
        re.compile(
            r"\bno-?show\w*|\bdid\s+not\s+return\b|\bnon-?attendance\b|\bcase\s+closed\b|\btransportation\b|"
            r"\bcost\b|\binsurance\b",
            re.I,
        ),
    ),
    (
        "discharged",
        re.compile(r"\bdischarged?\b|\bd/c\b|\bgoals?\s+(?:partially\s+)?met\b|\bplateau\b|\bno\s+improvement\b", re.I),
    ),
    (
        "ongoing",
        re.compile(
            r"\bto\s+date\b|\bso\s+far\b|\bcurrently\b|\bcontinue\b|\bvisit\s*#|\brestarted\b|\bremaining\b|"
            r"\bused\b|\bprogress\s+note\b|\btreatment\s+note\b|\bplanned\)",
            re.I,
        ),
    ),
]


def _pt_status(text: str, attended, planned) -> str | None:
    found = [name for name, p in _STATUS if p.search(text)]
    if attended is not None and planned is not None and attended == planned and "not-tolerated" not in found:
        return "completed"
    return found[0] if found else None


def _month_days(note_date: dt.date, text: str) -> list[str]:
    """Visit dates listed as m/d without a year ("(7/9, 7/16)"): the latest such day not after the note."""
    out = []
    for m in re.finditer(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])", text):
        try:
            day = dt.date(note_date.year, int(m.group(1)), int(m.group(2)))
        except ValueError:
            return []
        if day > note_date:
            day = day.replace(year=day.year - 1)
        out.append(day.isoformat())
    return out


def _pt_dates(note: _Note, text: str) -> tuple[str | None, str | None]:
    listed = re.search(r"\(([^()]*\d[^()]*)\)", text)
    if listed and re.fullmatch(r"[\d/,\s]+", listed.group(1)):
        hits = note.dates(listed.group(1))
        if len(hits) >= 2:
            return hits[0].value, hits[-1].value
        days = _month_days(note.date, listed.group(1))
        if len(days) >= 2:
            return days[0], days[-1]
    hits = [h for h in note.dates(text)]
    if not hits:
        return None, None
    first = hits[0]
    if first.end_value:
        return first.value, first.end_value
    # "A - B": two dates joined by a dash or "to" / "between A and B"
    for a, b in zip(hits, hits[1:]):
        between = text[a.end : b.start]
        if re.fullmatch(r"\s*(?:-|–|to|through|and)\s*", between):
            return a.value, b.value
    return first.value, None


def _pt_facts(note: _Note) -> list[NoteFact]:
    text = note.text
    therapy_note = bool(_THERAPY_NOTE.search(note.lines[0] if note.lines else ""))
    doc_region = None
    dx = _DX_FIELD.search(text)
    if dx:
        doc_region = region_of(dx.group(1))
    elif therapy_note:
        regions = {r for r in (region_of(line) for line in note.lines) if r}
        doc_region = regions.pop() if len(regions) == 1 else None
    doc_dates = re.search(
        r"\b(?:dates\s+of\s+service|cert\s+period|plan\s+of\s+care\s+certified|dates)\s*:?\s*([^\n)]*)", text, re.I
    )
    facts: list[NoteFact] = []
    for sent in note.sents:
        if (
            sent.line == 0
            and not any(p.search(sent.text) for p in _COUNT_PATTERNS)
            and (_THERAPY_NOTE.search(sent.text) or (sent is note.sents[0] and _PT_TITLE.match(sent.text)))
        ):
            continue  # the note's title
        clauses = sent.clauses
        if re.match(r"\s*PT\s*(?::|\|)", sent.text):
            clauses = (Clause(sent.start, sent.end, sent.text),)  # a table row or field line about PT
        for clause in clauses:
            c = clause.text
            count = None
            for p in _COUNT_PATTERNS:
                m = p.search(c)
                if m and re.search(r"\bremaining\b[^.;:]*$", c[: m.start()] + m.group(0).split(":")[0], re.I):
                    continue  # "Remaining authorized visits: 3" counts what is left, not what was attended
                if m:
                    count = m
                    break
            has_word = bool(_PT_WORD.search(c) or _PT_WORD_I.search(c))
            if count is None and not has_word:
                continue
            if _OTHER_CARE_IN_CLAUSE.search(c) and not has_word:
                continue
            if count is not None and not has_word and _OTHER_CARE_IN_CLAUSE.search(sent.text):
                continue
            if re.search(r"\bconservative\s+(?:care|therapy)\b", c, re.I) and count is None:
                continue
            if re.search(
                r"\brequires?\b|\brequired\b|\bmust\s+(?:have|document)\b|\bcriteri(?:a|on)\b", sent.text, re.I
            ):
                continue  # a payer's requirement, not care given
            fact = _pt_fact(note, sent, clause, count, has_word, doc_region, therapy_note, doc_dates, facts)
            if fact is None:
                continue
            prev = facts[-1] if facts else None
            if (
                therapy_note
                and prev is not None
                and count is not None
                and prev.assertion == fact.assertion == "present"
                and prev.get("sessions_attended") == fact.get("sessions_attended")
            ):
                # "Visit #: 7" and "Auth: 7/12 used" in one therapy note: one course, the fuller statement kept
                if fact.get("sessions_planned") is not None and prev.get("sessions_planned") is None:
                    for k, v in prev.fields.items():
                        if fact.fields.get(k) is None:
                            fact.fields[k] = v
                    facts[-1] = fact
                continue
            facts.append(fact)
    facts = _merge_course_mentions(note, facts)
    counted = [f for f in facts if f.assertion == "present" and f.get("sessions_attended") is not None]
    if len(counted) == 1 and counted[0].get("status") is None:
        counted[0].fields["status"] = _pt_status(
            text, counted[0].get("sessions_attended"), counted[0].get("sessions_planned")
        )
    return facts


def _merge_course_mentions(note: _Note, facts: list[NoteFact]) -> list[NoteFact]:
    """One course told twice in one note: "since starting therapy 5 weeks ago ... A: Visit 9" and a form's
    "Plan: 12 visits" next to "Attended: 9" are one course, the counted statement kept."""
    counted = [f for f in facts if f.assertion == "present" and f.get("sessions_attended") is not None]
    if len(counted) != 1:
        return facts
    course = counted[0]
    out = []
    for f in facts:
        if (
            f is not course
            and f.get("sessions_attended") is None
            and (course.get("region") is None or f.get("region") in (None, course.get("region")))
        ):
            plan = re.match(r"\s*plan\s*:\s*(\d+)\s+visits\b", note.text[f.sentence_start : f.sentence_end], re.I)
            if plan and f.assertion == "planned":
                if course.get("sessions_planned") is None:
                    course.fields["sessions_planned"] = int(plan.group(1))
                continue
            if f.assertion == "present" and f.start < course.start and not note.text[f.start : f.end].isupper():
                for k in ("start", "region"):
                    if course.fields.get(k) is None:
                        course.fields[k] = f.get(k)
                continue
        out.append(f)
    return out


def _pt_fact(note, sent, clause, count, has_word, doc_region, therapy_note, doc_dates, previous) -> NoteFact | None:
    text, c = note.text, clause.text
    word = _PT_WORD.search(c) or _PT_WORD_I.search(c)
    anchor = count or word
    a0, a1 = clause.start + anchor.start(), clause.start + anchor.end()
    before = text[clause.start : a0]
    family = _family(text, sent, note.lines, note.family_lines, a0, clause)
    # Negation: "No PT", "has not had any PT", "PT visits ...: 0", "never went", "not interested in PT".
    zero = re.search(r"\bvisits?\b[^:]*:\s*0\b", c, re.I)
    negated = (
        zero is not None
        or re.search(
            r"\bnever\s+went\b|\bnot\s+interested\b|\bhas\s+not\s+had\b|\bhas\s+not\s+been\b|"
            r"\bdid\s+not\s+(?:go|attend)\b|\bdenies\b|\bnot\s+(?:yet\s+)?start(?:ed)?\b|\byet\s+to\s+start\b|\bhasn't\s+started\b|"
            r"\bdeclined\b|\brefused\b|\bdenied\b",
            sent.text if re.search(r"\bnever\s+went\b", sent.text) else c,
            re.I,
        )
        or re.search(r"\bno\s+(?:PT|physical\s+therapy|therapy)\b", c, re.I)
    )
    hedged = _HEDGE_BEFORE.search(before) or re.search(r"\bmay\s+have\s+had\b|\bthinks\b|\bcannot\s+recall\b", c, re.I)
    blank = count is not None and count.groupdict().get("a") and count.group("a").startswith("_")
    requested = re.search(
        r"\brequest(?:ed|s)?\b|\bauth\w*\s+request\b|\bpending\s+approval\b|\bvisits\s+authori[sz]ed\s*:|"
        r"\bauthori[sz]ed\b[^;.]*\(\s*\d+\s+visits\s*\)",
        c,
        re.I,
    ) and not re.search(r"\battended\b|\bused\b|\bhas\s+been\s+to\b|\bcompleted\b|\bvisit\s+\d+\s+of\b", c, re.I)
    planned = blank or (
        count is None
        and (
            _PLANNED.search(before)
            or re.search(
                r"\breferral\b|\brecommended\b|\bhoping\b|\bordered\b|\breferred\b|\bprescribed\b|\bscheduled\b|\bwill\s+(?:begin|start)\b|"
                r"\binterested\s+in\b|\bwould\s+like\b|\bwants\s+to\b|\bpending\b|\bauthoriz\w+\s+request",
                c,
                re.I,
            )
        )
    )
    if family:
        assertion = "family"
    elif zero or negated:
        assertion = "negated"
    elif hedged:
        assertion = "hedged"
    elif planned or requested or re.match(r"\s*plan\s*:", c, re.I):
        assertion = "planned"
    else:
        assertion = "present"
    attended = planned_n = None
    if count is not None and not blank:
        g = count.groupdict()
        if g.get("all"):
            attended = None
        elif g.get("f"):
            attended = int(number(g["f"]) or 0) + 1
        elif g.get("a"):
            attended = int(number(g["a"]) or 0) or None
        if g.get("p"):
            planned_n = int(number(g["p"]) or 0) or None
    elif blank:
        planned_n = int(count.group("p"))
    if assertion == "planned" and count is not None and re.match(r"\s*plan\s*:", c, re.I):
        attended, planned_n = None, int(number(re.findall(r"\d+", count.group(0))[-1]) or 0) or None
    if requested and count is not None:
        # "Visits requested: 8", "requested 12": the number is what was asked for, never what was attended
        attended, planned_n = None, int(number(re.findall(r"\d+", count.group(0))[-1]) or 0) or None
    elif requested:
        num = re.search(
            r"\brequested\s*:?\s*(\d+)|(\d+)\s+visits\s+requested|visits\s+(?:requested|authori[sz]ed)\s*:\s*(\d+)",
            c,
            re.I,
        )
        if num:
            planned_n = int(next(g for g in num.groups() if g))
    if assertion == "present" and planned_n is None:
        auth = re.search(r"\bauthori[sz]ed\b[^;.]*?\(\s*(\d+)\s+visits\s*\)", sent.text, re.I)
        if auth and count is not None and clause.start - sent.start > auth.end():
            planned_n = int(auth.group(1))
    if zero:
        attended = None
    # Region: the clause, then the sentence, then the note's diagnosis line or (therapy note) its only region.
    region = region_of(c) or region_of(sent.text)
    if region is None and (therapy_note or (count is not None and doc_region and _DX_FIELD.search(note.text))):
        region = doc_region
    if (
        region is None
        and previous
        and (
            re.search(r"\brestart|\bcurrent\s+episode\b|\bagain\b", sent.text, re.I)
            or (assertion == "negated" and re.search(r"\bsince\b", c, re.I))
        )
    ):
        region = previous[-1].get("region")
    if assertion == "present" and count is None:
        # A PT mention without a count that adds nothing new belongs to a course already read.
        if (
            previous
            and previous[-1].assertion == "present"
            and not note.dates(c)
            and not region_of(c)
            and not find_length(c)
        ):
            prev = previous[-1]
            if prev.get("status") is None or prev.get("status") == "ongoing":
                new = _pt_status(c, None, None)
                if new:
                    prev.fields["status"] = new
            return None
    start, end = _pt_dates(note, c)
    if start is None and assertion in ("present", "planned") and doc_dates and (therapy_note or count is not None):
        start, end = _pt_dates(note, doc_dates.group(1))
        if assertion == "present" and re.search(r"cert", doc_dates.group(0), re.I):
            end = None  # a certification period bounds the plan, not the visits attended
    if start is None and assertion == "present" and count is not None:
        m = re.search(r"\(cert\s+period\s+([^)]*)\)", sent.text, re.I)
        if m:
            start = _pt_dates(note, m.group(1))[0]
    if assertion == "present" and re.search(r"\bcert\s+period\b", c, re.I):
        end = None
    if end is None and assertion == "present":
        m = re.search(
            r"\b(?:last\s+visit|case\s+closed|discharged\s+to\s+HEP|d/c)\s*:?\s*([\d/]+)",
            sent.text + " " + text[sent.end : sent.end + 200],
            re.I,
        )
        if m:
            hits = note.dates(m.group(1))
            end = hits[0].value if hits else None
        if (
            start is not None
            and end is None
            and re.search(r"\bcompleted\b[^.]*\bin\s+(?:the\s+\w+\s+of\s+)?\d{4}\b", c, re.I)
        ):
            end = start
        if (
            end is None
            and re.search(
                r"\b(?:in|during)\s+(January|February|March|April|May|June|July|August|September|October|November|December)\b",
                c,
            )
            and start
            and len(start) == 7
            and re.search(r"\bafter\b", c)
        ):
            end = start
    weeks = None
    cleaned = re.sub(
        r"\b\d+\s*x\s*/\s*w(?:ee)?k\b|\b(?:once|twice|three\s+times|\d+\s*(?:x|times))\s+(?:a|per)\s+week\b", "", c
    )
    length = find_length(cleaned[max(0, anchor.start() - 40) :])
    if length and length[1] in ("week", "month"):
        weeks = as_weeks(length[0], length[1])
    elif assertion == "present" and therapy_note is False and re.search(r"\bx\s*\d+\s*wks?\b", sent.text):
        m = re.search(r"\bx\s*(\d+)\s*wks?\b", sent.text)
        weeks = float(m.group(1))
    if weeks is None and assertion in ("present", "planned"):
        m = (
            re.search(r"\bduration\s+of\s+care\s*:\s*(\d+)\s*weeks", note.text, re.I)
            or re.search(r"\bx\s*(\d+)\s*wks?\b", sent.text)
            or (
                re.search(r"\bplan\s+of\s+care\s*:[^\n.]*\bx\s*(\d+)\s*wks?\b", note.text, re.I)
                if count is not None and count.groupdict().get("all")
                else None
            )
        )
        if m and (therapy_note or assertion == "planned" or m.re.pattern.startswith(r"\bx") or "plan" in m.re.pattern):
            weeks = float(m.group(1))
    if weeks is not None and weeks == int(weeks):
        weeks = int(weeks)
    status = None
    if assertion == "present":
        status = _pt_status(sent.text, attended, planned_n)
        # The course's outcome may follow in the next lines of the same note (a discharge reason).
        following = note.text[sent.end : sent.end + FOLLOWING_CHARS]
        if status is None or status == "ongoing":
            rest = _pt_status(following, attended, planned_n) if therapy_note or count is not None else None
            if rest and rest != "ongoing" and not _PT_WORD.search(following):
                status = rest
            elif (
                rest
                and rest != "ongoing"
                and re.search(r"\b(?:discharg|d/c|case\s+closed|non-?attendance|declined)", following, re.I)
                and not re.search(r"\bPT\b.*\bPT\b", following)
            ):
                status = rest
        here = note.text[sent.start : sent.end + FOLLOWING_CHARS]
        if status == "not-tolerated" or re.search(r"\bdeclined\s+further\b.*\bpain\b", here, re.I):
            status = "not-tolerated" if re.search(r"\bpain\b", here, re.I) else status
    fields = {
        "sessions_attended": attended if assertion in ("present", "family", "hedged") else None,
        "sessions_planned": planned_n,
        "start": start,
        "end": end,
        "weeks": weeks,
        "region": region,
        "status": status,
    }
    if assertion == "negated":
        fields.update(sessions_attended=None, sessions_planned=None, start=None, end=None, weeks=None, status=None)
    s0, s1 = (a0, a1)
    return _fact(note, "pt-attendance", assertion, s0, s1, sent, **fields)


# ------------------------------------------------------------------ other conservative care

_CARE = [
    (name, re.compile(p, re.I))
    for name, p in (
        ("chiropractic", r"\bchiropractic\b|\bchiro\b"),
        (
            "home-exercise",
            r"\bHEP\b|\bhome\s+exercise\s+program\b|\bhome\s+program\b|\bhome\s+stretches\b|\bwater\s+aerobics\b|"
            r"\bself-directed\s+exercise\b",
        ),
        (
            "activity-modification",
            r"\blight\s+duty\b|\bmodified\s+duty\b|\boff\s+work\b|\bactivity\s+modification\b|"
            r"\bavoid(?:ed|ing)?\s+(?:bending|lifting)\b|(?<!\bbed\s)\brest\b(?!\s+of)",
        ),
        ("acupuncture", r"\bacupuncture\b"),
        ("massage", r"\bmassage\b"),
        ("bracing", r"\bbrac(?:e|ing)\b|\bLSO\b|\bcorset\b"),
        ("nsaid", r"\bNSAIDs?\b|\banti-?inflammator(?:y|ies)\b"),
        (
            "other",
            r"\bESI\b|\bepidural\s+steroid\s+injections?\b|\binjections?\b|\bTENS\b|\bice/heat\b|\bOTC\s+analgesics\b",
        ),
    )
]


def _care_facts(note: _Note, pt: list[NoteFact]) -> list[NoteFact]:
    text = note.text
    facts: list[NoteFact] = []
    pt_region = next((f.get("region") for f in pt if f.assertion == "present"), None)
    for sent in note.sents:
        if _INSTRUCTION.search(sent.text) and not re.search(r"\bHEP\b", sent.text):
            continue
        named_drug = _DRUG_RE.search(sent.text)
        for clause in sent.clauses:
            c = clause.text
            for modality, p in _CARE:
                for m in p.finditer(c):
                    if modality == "nsaid" and (
                        named_drug
                        or re.search(r"\boral\s+NSAIDs\s+avoided|\bnot\s+used\s+NSAIDs", c, re.I) is None
                        and re.search(r"\bNSAIDs?\s*:\s*(?:ibuprofen|naproxen)", c, re.I)
                    ):
                        if not re.search(r"\bavoided\b|\bnot\s+used\b", c, re.I):
                            continue
                    if (
                        modality == "other"
                        and re.search(r"\bESI\b|\bepidural\b", c)
                        and m.group(0).lower().startswith("injection")
                    ):
                        continue
                    if (
                        modality == "activity-modification"
                        and m.group(0).lower() == "rest"
                        and not re.search(r"\bice|heat|rest,|,\s*rest\b", c, re.I)
                    ):
                        continue
                    a0, a1 = clause.start + m.start(), clause.start + m.end()
                    before = text[clause.start : a0]
                    after = text[a1 : sent.end] if " | " in sent.text else text[a1 : clause.end]
                    if _family(text, sent, note.lines, note.family_lines, a0, clause):
                        assertion = "family"
                    elif (
                        _negated_before(before)
                        or _UNTICKED.search(before)
                        or re.search(
                            r"^\s*(?:\|\s*[^|]*\|\s*)?(?:not\s+tried|:\s*no\b)|^\s*:?\s*No\b|\bavoided\b|"
                            r"\bnot\s+been\s+doing\b|\bnot\s+tried\b",
                            after,
                            re.I,
                        )
                        or re.search(r"\bhas\s+not\s+used\b", before, re.I)
                    ):
                        assertion = "negated"
                    elif re.search(r"\bcontinue\s+(?:the\s+|with\s+)?$", before, re.I):
                        assertion = "present"
                    elif (
                        _PLANNED.search(before)
                        or re.search(r"\brecommend|\btry\b", before, re.I)
                        or re.match(
                            r"\s*(?:therapy\s+)?(?:was\s+|is\s+)?(?:recommended|suggested|ordered|advised)\b",
                            after,
                            re.I,
                        )
                    ):
                        assertion = "planned"
                    else:
                        assertion = "present"
                    region = region_of(re.sub(r"\bback\s+pain\b", "", c))
                    if region is None and modality == "home-exercise":
                        region = pt_region
                    if region is None and modality == "other" and re.search(r"\bL[1-5]\b", sent.text):
                        region = "lumbar"
                    if region is None and re.search(r"\bchiropractic\s+care\b", c, re.I):
                        region = region_of(sent.text)
                    row = sent.text[m.start() + clause.start - sent.start :] if " | " in sent.text else c[m.start() :]
                    dates = note.dates(row) if assertion == "present" else []
                    start = end = None
                    if dates:
                        start = dates[0].value
                        end = dates[0].end_value
                        if len(dates) > 1 and re.search(r"\(|,", c[m.start() :]) and not end:
                            end = dates[-1].value if re.search(r"\bx\s*\d|\(", c) else None
                        if (
                            end is None
                            and re.search(
                                r"\b(?:on|in|spring|summer|fall|\|)\s*",
                                c[m.start() : dates[0].start + m.start()] + " ",
                                re.I,
                            )
                            and not re.search(r"\bsince\b", c, re.I)
                            and len(dates) == 1
                        ):
                            end = start
                    facts.append(
                        _fact(
                            note,
                            "conservative-care",
                            assertion,
                            a0,
                            a1,
                            sent,
                            modality=modality,
                            region=region,
                            start=start,
                            end=end,
                        )
                    )
    # One fact per modality, words and assertion in a sentence.
    return _first_of_each(
        facts, lambda f: (f.sentence_start, f.get("modality"), text[f.start : f.end].lower(), f.assertion)
    )


# ------------------------------------------------------------------ nicotine

_PRODUCTS = [
    (name, re.compile(p, re.I))
    for name, p in (
        (
            "nrt",
            r"\bnicotine\s+(?:gum|patch(?:es)?|lozenges?)\b|(?<!lidocaine\s)(?<!fentanyl\s)(?<!butrans\s)\bpatch\b",
        ),
        ("cigar", r"\bcigars?\b"),
        ("vaping", r"\bvap(?:e|es|ed|ing)\b|\be-?cig(?:arette)?s?\b(?:\s+use)?|\bpods\b"),
        (
            "smokeless",
            r"\bchew(?:s|ing)?\s+tobacco\b|\bchews\b|\bdip\b|\bsnuff\b|\bsmokeless(?:\s+(?:tobacco|products))?\b|\bpouches\b|\bZyn\b",
        ),
        (
            "cigarettes",
            r"\bnon-?smoker\b|\bsmok(?:e|er|es|ed|ing)\b|\bex-?smoker\b|\bcigarettes?\b|\bcigs?\b|\b\d+(?:\.\d+)?\s*ppd\b",
        ),
        ("any", r"\btobacco\b|\bnicotine\b"),
    )
]
# A bare "patch" is NRT only in a sentence about smoking ("quit cigs, still using patch 14mg").
_NICOTINE_CONTEXT = re.compile(r"\b(?:cig\w*|smok\w*|vap\w*|nicotine|tobacco)\b", re.I)
_NICOTINE_SKIP = re.compile(
    r"\bcessation\b|\bcounsel\w*|\bscreening\b|\bsecondhand\b|\bpassive\s+exposure\b|\bChantix\b|\brisks?\b|"
    r"\bcontraindication\b|\bsee\s+social\b|\breplacement\s+options\b|\bcotinine\b",
    re.I,
)
_CANNABIS = re.compile(r"\b(?:marijuana|cannabis|THC|CBD)\b", re.I)


_NEVER = re.compile(r"\bnever\b(?!\s+went)", re.I)
_FORMER = re.compile(
    r"(?<!to\s)(?<!to\squit\s)\b(?:(?<!\bto\s)quit|quitting|stopped|has\s+not\s+(?:used|smoked|vaped|had)\b[^.;]*\bsince|"
    r"in\s+remission|off\s+(?:cig\w*|tobacco|nicotine)|used\s+to|(?:smoke|tobacco|nicotine)-?\s?free(?!,?\s+per\b)|ex-?smoker|former|until\s+\d{4}|none\s+since|none\s+x|no\s+cigarettes\s+x|"
    r"denies\s+any\s+nicotine\s+since|not\s+touched\s+an?\s+\w+\s+since)\b",
    re.I,
)
_USE = re.compile(
    r"\b(?:quit|former|never|smokes|vapes|vape|chews|uses|using|continues|current|was\s+smoking|restarted)\b", re.I
)


def _cue_owner(cue: re.Match, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    """A status word belongs to the next product in its clause ("quit cigarettes"), else the last one before it."""
    inside = [s for s in spans if cue.start() <= s[0] and s[1] <= cue.end()]
    if inside:
        return inside[0]
    after = [s for s in spans if s[0] >= cue.end()]
    if after and after[0][0] - cue.end() <= 25:
        return after[0]
    before = [s for s in spans if s[1] <= cue.start()]
    return before[-1] if before else (after[0] if after else None)


_STATUS_FIELD = re.compile(
    r"^\s*(?:tobacco(?:\s+use)?|nicotine(?:\s+use)?|tobacco/nicotine)\s*:\s*(former|quit|current|never)\b(.*)$", re.I
)
_TYPE_FIELD = re.compile(r"^\s*(?:types?|products?)\s*:\s*(.+?)\.?\s*$", re.I)
_LAST_USE_FIELD = re.compile(r"^\s*last\s+(?:nicotine|tobacco)\s+use\s*:", re.I)
_FORMER_FIELD = re.compile(r"^\s*former\s*:\s*yes\b", re.I)
# "Tobacco:", "Tobacco use:", "Tobacco/Nicotine:" as a field label names no product
_LABEL = re.compile(
    r"\b(?:tobacco|nicotine)(?:\s+use)?(?=\s*:)|\btobacco(?=/nicotine\s*:)|(?<=tobacco/)nicotine(?=\s*:)", re.I
)


def _nicotine_form(note: _Note) -> tuple[list[NoteFact], set[int]]:
    """EHR social-history fields: a status field, the product in the next "Type:" field, the quit date in a
    "Quit date:" field ("Tobacco use: Former / Type: Cigarettes / Quit date: 09/14/2025")."""
    facts: list[NoteFact] = []
    used: set[int] = set()
    sents = note.sents
    for si, sent in enumerate(sents):
        m = _STATUS_FIELD.match(sent.text)
        if m and any(p.search(m.group(2)) for name, p in _PRODUCTS if name != "any"):
            m = None  # "Tobacco use: current every day smoker": the product is in the field; read as prose
        if m:
            word = m.group(1).lower()
            status = {"quit": "former"}.get(word, word)
            product, type_si = "any", None
            for n in range(si + 1, min(si + 4, len(sents))):
                t = _TYPE_FIELD.match(sents[n].text)
                if t:
                    named = [name for name, p in _PRODUCTS if p.search(t.group(1)) and name != "any"]
                    if len(named) == 1:
                        product, type_si = named[0], n
                    break
            quit_date = None
            if status == "former" and re.search(r"\bquit\b", m.group(2), re.I):
                hits = note.dates(m.group(2))
                quit_date = hits[0].value if hits else None
            elif status == "former":
                for n in range(si + 1, min(si + 4, len(sents))):
                    if re.match(r"\s*quit\s+date\s*:", sents[n].text, re.I):
                        hits = note.dates(sents[n].text)
                        quit_date = hits[0].value if hits else None
                        used.add(n)
                        break
            used.update({si} | ({type_si} if type_si is not None else set()))
            facts.append(
                _fact(
                    note,
                    "nicotine",
                    "present",
                    sent.start,
                    sent.end,
                    sent,
                    status=status,
                    product=product,
                    quit_date=quit_date,
                    amount=None,
                )
            )
            continue
        if _LAST_USE_FIELD.match(sent.text):
            hits = note.dates(sent.text)
            used.add(si)
            if hits:
                facts.append(
                    _fact(
                        note,
                        "nicotine",
                        "present",
                        sent.start,
                        sent.end,
                        sent,
                        status="former",
                        product="any",
                        quit_date=hits[0].value,
                        amount=None,
                    )
                )
            continue
        if _FORMER_FIELD.match(sent.text):
            prev = sents[si - 1].text if si else ""
            named = [name for name, p in _PRODUCTS if p.search(prev) and name != "any"]
            product = named[0] if len(named) == 1 else "any"
            tail = sent.text[_FORMER_FIELD.match(sent.text).end() :]
            hits = note.dates(tail) if re.search(r"\bquit\b", tail, re.I) else []
            used.add(si)
            facts.append(
                _fact(
                    note,
                    "nicotine",
                    "present",
                    sent.start,
                    sent.end,
                    sent,
                    status="former",
                    product=product,
                    quit_date=hits[0].value if hits else None,
                    amount=None,
                )
            )
    return facts, used


def _nicotine_facts(note: _Note) -> list[NoteFact]:
    facts, used = _nicotine_form(note)
    for si, sent in enumerate(note.sents):
        if si in used:
            continue
        if re.search(r"-free\b[^\n]*\[\s*x\s*\]\s*yes\b", sent.text, re.I):
            continue
        if re.search(
            r"\brequires?\b|\brequired\b|\bcriteri(?:a|on)\b|\bbefore\s+\w+\s+fusion\s+can\b", sent.text, re.I
        ):
            continue  # a payer's requirement names nicotine without saying anything about the patient  # "Nicotine-free >= 6 wks: [X] Yes": the form's question, the answer is in its other fields
        for clause in sent.clauses:
            c = clause.text
            if re.search(r"\bdoes\s+not\s+consider\b", c, re.I):
                continue
            if _NICOTINE_SKIP.search(c) and not _USE.search(c):
                continue
            found: list[tuple[str, re.Match]] = []
            taken: list[tuple[int, int]] = []
            for product, p in _PRODUCTS:
                for m in p.finditer(c):
                    if any(a < m.end() and m.start() < b for a, b in taken):
                        continue
                    if product == "any" and _LABEL.match(c, m.start()):
                        continue
                    if product == "nrt" and m.group(0).lower() == "patch" and not _NICOTINE_CONTEXT.search(sent.text):
                        continue
                    if (
                        product == "cigarettes"
                        and m.group(0).lower().startswith("smok")
                        and re.search(r"\bcigars?\b", c, re.I)
                    ):
                        continue  # "smokes cigars": the cigar is the product
                    taken.append((m.start(), m.end()))
                    found.append((product, m))
            named = [x for x in found if x[0] != "any"]
            if named and not re.match(r"\s*(?:denies\s+)?tobacco\b", c, re.I):
                # "tobacco"/"nicotine" next to a named product adds nothing ("chews tobacco", "vape nicotine")
                found = [x for x in found if x[0] != "any"]
            if named and re.match(r"\s*tobacco\s*:", c, re.I):
                found = [x for x in found if x[0] != "any"]
            found = [x for x in found if not (x[0] == "vaping" and _CANNABIS.search(c[: x[1].start()]))]
            spans = sorted((m.start(), m.end()) for _, m in found)
            product_of = {(m.start(), m.end()): product for product, m in found}
            status_of: dict[tuple[int, int], str] = {}
            for cue in _NEVER.finditer(c):
                owner = _cue_owner(cue, spans)
                if owner:
                    status_of.setdefault(owner, "never")
            for cue in _FORMER.finditer(c):
                owner = _cue_owner(cue, spans)
                if owner:
                    status_of.setdefault(owner, "former")
            done: set[str] = set()
            for product, m in sorted(found, key=lambda x: x[1].start()):
                if product in done:
                    continue  # one product's words in one clause ("Never smoked cigarettes") are one mention
                done.add(product)
                statuses = [st for span, st in status_of.items() if product_of.get(span) == product]
                status = "never" if "never" in statuses else "former" if "former" in statuses else "current"
                if (
                    status == "current"
                    and re.fullmatch(r"smoked|vaped|chewed", m.group(0), re.I)
                    and not _RELATIVE.search(c[: m.start()])
                    and not re.search(r"\b(?:still|currently|now|daily|every\s+day|continues)\b", c, re.I)
                ):
                    # "She smoked for about ten years in her twenties": a past habit, not said to be current
                    status = "former"
                facts += _nicotine_fact(note, si, sent, clause, m, product, status)
    out: dict[tuple, NoteFact] = {}
    for f in facts:
        key = (f.get("product"), f.get("status"), f.assertion)
        if key not in out or (out[key].get("quit_date") is None and f.get("quit_date") is not None):
            out[key] = f  # one fact per product, status and assertion; the one that dates the quit
    return list(out.values())


_RESTART = re.compile(r"\b(?:restarted|picked\s+it\s+(?:back\s+)?up|started\s+(?:again|back)|resumed|relapsed)\b", re.I)


def _nicotine_fact(note, si, sent, clause, m, product, status) -> list[NoteFact]:
    text, c = note.text, clause.text
    a0, a1 = clause.start + m.start(), clause.start + m.end()
    before = text[clause.start : a0]
    if product == "any" and re.search(r"\bnicotine\s+\d+\s*%", c):
        return []
    quit_date = None
    if _family(text, sent, note.lines, note.family_lines, a0, clause):
        assertion = "family"
    elif status == "current" and (
        re.search(r"\bdenies\b|\bhas\s+not\s+used\b|\bnot\s+using\b|\bno\s+history\s+of\b", before, re.I)
        or re.search(r"\[\s\]\s*yes\b[^\n]*\[x\]\s*no\b", c, re.I)
        or re.search(r"\bnon-?smoker\b", m.group(0), re.I)
        or re.search(r"\bdoes\s+not\b|\bno\s+nicotine\b|:\s*no\s*(?:$|[.,;|])", c, re.I)
        or (re.search(r"\bor\b|,", before) and re.search(r"\bdenies\b", sent.text[: a0 - sent.start], re.I))
    ):
        assertion = "negated"
    elif re.search(r"\bmight\b|\bI\s+understand\b|\bmay\b|\bsays\s+(?:he|she)\s+stopped\b", c, re.I) or re.search(
        # the patient's word put in doubt in the same sentence: "I suspect", "she insists", "his wife says he still"
        r"\bI\s+suspect\b|\binsists\b|\b(?:wife|husband|partner|family)\s+says\b|\bclaims\b|\bper\s+(?:pt|patient)\)",
        sent.text,
        re.I,
    ):
        assertion = "hedged"
    elif status == "current" and re.search(r"\b(?:hx|h/o|history)\s+of\s+smoking\b|\bhx\s+of\b", c, re.I):
        assertion, status = "hedged", "former"
    elif status == "current" and re.search(r"\bat\s+that\s+time\b", c, re.I):
        assertion = "historical"
    elif status == "former" and _restart_after(note, si, a1, clause):
        assertion = "historical"
    else:
        assertion = "present"
    if status == "former" and re.search(r"\bh/o\s+smoking\b", c, re.I) and re.search(r"none\s+since", c, re.I):
        assertion = "present"
    if status == "former" and assertion in ("present", "hedged"):
        quit_date = _quit_date(note, c, sent, si)
    amount = _amount(c) if status == "current" and assertion in ("present", "family", "historical") else None
    if status == "former" and assertion in ("present", "hedged"):
        amount = _amount(c)
    if product == "nrt":
        am = re.search(r"\d+\s*mg\s*~?\s*\d+\s+pieces/day", c)
        amount = am.group(0) if am else amount
    out = [
        _fact(
            note,
            "nicotine",
            assertion,
            a0,
            a1,
            sent,
            status=status,
            product=product,
            quit_date=quit_date,
            amount=amount,
        )
    ]
    restart = _restart_after(note, si, a1, clause) if status == "former" and assertion == "historical" else None
    if restart:
        r0, r1, rsent = restart
        out.append(
            _fact(
                note,
                "nicotine",
                "present",
                r0,
                r1,
                rsent,
                status="current",
                product=product,
                quit_date=None,
                amount=_amount(c),
            )
        )
    return out


def _restart_after(note: _Note, si: int, a1: int, clause: Clause):
    """A restart after a former status, in its clause or the next sentence ("He picked it back up in March")."""
    m = _RESTART.search(note.text, a1, clause.end)
    if m:
        return m.start(), m.end(), note.sents[si]
    if si + 1 < len(note.sents):
        nxt = note.sents[si + 1]
        m = _RESTART.search(note.text, nxt.start, nxt.end)
        if m and not any(p.search(nxt.text) for name, p in _PRODUCTS):
            return m.start(), m.end(), nxt
    return None


def _quit_date(note: _Note, c: str, sent: Sentence, si: int) -> str | None:
    m = re.search(r"\b(?:none|no\s+cigarettes)\s+x\s*(\d+)\s*(months?|mos?)\b", c, re.I)
    if m:
        return months_before(note.date, float(m.group(1)))
    m = re.search(r"\b(?:quit|stopped|quitting|until|since)\b(.*)", c, re.I)
    if m is None:
        for n in (si + 1, si - 1):  # a "Quit date:" field next to the status field
            other = note.sents[n] if 0 <= n < len(note.sents) else None
            if other is not None and re.match(r"\s*quit\s+date\s*:", other.text, re.I):
                hits = note.dates(other.text)
                return hits[0].value if hits else None
        return None
    tail = m.group(1)
    hits = note.dates(tail)
    if hits:
        if re.search(r"\bago\b", tail[: hits[0].end + 4]) and re.search(r"\byears?\s+ago\b", tail):
            return hits[0].value[:4]
        return hits[0].value
    if re.search(
        r"\bsince\s+(January|February|March|April|May|June|July|August|September|October|November|December)\b", c
    ):
        hits = note.dates(c[m.start() :])
        return hits[0].value if hits else None
    return None


_AMOUNT = re.compile(
    r"(?:about\s+)?(?:half\s+a\s+pack\s+a\s+day|one\s+pack\s+per\s+day|\d+(?:\.\d+)?\s*ppd(?:\s+x\s+\d+\s+yrs)?|\d+/\d+\s*ppd|"
    r"\d+(?:\.\d+)?\s*pack-years|\d+\s+cig/day|packs/day:\s*[\d.]+|a\s+few\s+cigarettes\s+on\s+weekends|"
    r"about\s+a\s+can\s+every\s+\d+\s+days|1\s+disposable\s+lasts\s+~?\d+\s+wks)",
    re.I,
)


def _amount(s: str) -> str | None:
    found = _AMOUNT.findall(s)
    if not found:
        return None
    if len(found) > 1 and re.search(r"cutting\s+down", s, re.I):
        return found[-1]
    return found[0]


# ------------------------------------------------------------------ medication trials

DRUGS = {
    "gabapentin": "gabapentin",
    "neurontin": "gabapentin",
    "pregabalin": "pregabalin",
    "lyrica": "pregabalin",
    "duloxetine": "duloxetine",
    "cymbalta": "duloxetine",
    "venlafaxine": "venlafaxine",
    "effexor": "venlafaxine",
    "amitriptyline": "amitriptyline",
    "elavil": "amitriptyline",
    "nortriptyline": "nortriptyline",
    "pamelor": "nortriptyline",
    "meloxicam": "meloxicam",
    "mobic": "meloxicam",
    "ibuprofen": "ibuprofen",
    "advil": "ibuprofen",
    "motrin": "ibuprofen",
    "naproxen": "naproxen",
    "aleve": "naproxen",
    "naprosyn": "naproxen",
    "celecoxib": "celecoxib",
    "celebrex": "celecoxib",
    "diclofenac": "diclofenac",
    "voltaren": "diclofenac",
    "etodolac": "etodolac",
    "nabumetone": "nabumetone",
    "ketorolac": "ketorolac",
    "acetaminophen": "acetaminophen",
    "tylenol": "acetaminophen",
    "paracetamol": "acetaminophen",
    "cyclobenzaprine": "cyclobenzaprine",
    "flexeril": "cyclobenzaprine",
    "methocarbamol": "methocarbamol",
    "robaxin": "methocarbamol",
    "tizanidine": "tizanidine",
    "zanaflex": "tizanidine",
    "baclofen": "baclofen",
    "carisoprodol": "carisoprodol",
    "soma": "carisoprodol",
    "methylprednisolone": "methylprednisolone",
    "medrol": "methylprednisolone",
    "prednisone": "prednisone",
    "tramadol": "tramadol",
    "ultram": "tramadol",
    "oxycodone": "oxycodone",
    "percocet": "oxycodone-acetaminophen",
    "hydrocodone": "hydrocodone",
    "norco": "hydrocodone-acetaminophen",
    "vicodin": "hydrocodone-acetaminophen",
    "morphine": "morphine",
    "hydromorphone": "hydromorphone",
    "tapentadol": "tapentadol",
}
_DRUG_RE = re.compile(r"\b(" + "|".join(sorted(DRUGS, key=len, reverse=True)) + r")\b", re.I)
_DOSE = re.compile(
    r"^\s*(?::\s*)?\(?\s*(?P<dose>(?:(?:up\s+to\s+)?\d+(?:\.\d+)?(?:\s*mg)?(?:\s*→\s*\d+\s*mg)?(?:\s+PO)?(?:\s+(?:daily|bid|tid|qid|qhs|q\d+h|"
    r"twice\s+daily|once\s+daily|three\s+times\s+(?:a\s+day|daily)|BID|TID|QID))?(?:\s+(?:qhs|prn|PRN))*(?:\s+titrating\s+to\s+\d+\s*mg\s+(?:tid|bid))?)|"
    r"gel\s+QID|dosepak\s+x\d)",
    re.I,
)
_MED_SKIP_LINE = re.compile(r"\ballerg(?:y|ies|ic)\b", re.I)
_DRUG_INFO = re.compile(r"\bis\s+an?\s+\w+\s+(?:often\s+)?used\b|\bside\s+effects\s+include\b", re.I)
_OTHER_INDICATION = re.compile(
    r"\bfor\s+(?:depression|anxiety|fibromyalgia|migraines?|seizures|hypertension)\b.*\bnot\s+for\s+pain\b|"
    r"\bnot\s+for\s+pain\b",
    re.I,
)
_OUTCOMES = [
    (
        "side-effects",
        re.compile(
            r"\b(?:not\s+able|unable)\s+to\s+tolerate\b|\bintoleran\w+|\bd/t\s+\w+|\bstopped\s+(?:d/t|due\s+to)\b|\bGI\s+upset\b|\bdid\s+not\s+tolerate\b|\bnot\s+tolerated\b|"
            r"\bfelt\s+drunk\b|\bside\s+effects?\b|\bnausea\b|\bdizz\w+|\bswelling\b|\bfatigue\b",
            re.I,
        ),
    ),
    (
        "no-relief",
        re.compile(
            r"\bfailed\b|\bno\s+(?:improvement|benefit|relief|change)\b|\bwithout\s+(?:benefit|improvement|relief)\b|"
            r"\bineffective\b|\bnot\s+pain\b|\bno\s+help\b",
            re.I,
        ),
    ),
    (
        "partial-relief",
        re.compile(
            r"\bpartial\b|\b~?\d+%\s+relief\b|\bmild\s+benefit\b|\bhelps\s+some\b|\bsome\s+relief\b|\bminimal\b", re.I
        ),
    ),
    ("relief", re.compile(r"\bhelped\b|\bis\s+helping\b|\bgood\s+relief\b|\beffective\b", re.I)),
    (
        "ongoing",
        re.compile(
            r"\btaking\b|\bstarted\s+today\b|\bnow\s+on\b|\bcurrent\s+meds\b|\bprn\b|\bstarted\b.*\bby\b|\bstarted\s+\w+\s+\d",
            re.I,
        ),
    ),
]
_SIDE_EFFECT = re.compile(
    r"\b(nausea|dizziness|GI\s+upset|fatigue|leg\s+swelling|sedation|drowsiness|'felt\s+drunk'|felt\s+drunk)\b", re.I
)


def _med_date_cue(before: str) -> str | None:
    if re.search(
        r"\b(?:stopped|d/c'?d|discontinued|finished|until|off\s+since|tapered\s+off)\b[^,;()]*$", before, re.I
    ):
        return "stop"
    if re.search(r"\b(?:increased|decreased|titrated|reduced|changed|switched)\b[^,;()]*$", before, re.I):
        return "change"
    return None


def _medication_facts(note: _Note) -> list[NoteFact]:
    text = note.text
    facts: list[NoteFact] = []
    for sent in note.sents:
        line = note.lines[sent.line]
        if _MED_SKIP_LINE.search(line) or _DRUG_INFO.search(sent.text) or _OTHER_INDICATION.search(sent.text):
            continue
        mentions = list(_DRUG_RE.finditer(text, sent.start, sent.end))
        for i, m in enumerate(mentions):
            drug = DRUGS[m.group(1).lower()]
            clause = _clause_at(sent, m.start())
            nxt = mentions[i + 1].start() if i + 1 < len(mentions) else sent.end
            own = text[m.end() : nxt]  # from the drug to the next drug
            prefix = text[clause.start : m.start()]
            # Where a list shares its lead-in ("Failed trials of A and B", "did not tolerate A or B").
            first_in_clause = next((x for x in mentions if clause.start <= x.start() < clause.end), m)
            lead = text[clause.start : first_in_clause.start()]
            if _family(text, sent, note.lines, note.family_lines, m.start(), clause) or re.search(
                r"\b(?:sister|brother|mother|father|husband|wife|daughter|son)\s+takes\s+it\b", own, re.I
            ):
                assertion = "family"
            elif re.search(
                r"\bnever\s+started\b|\bnot\s+tried\b|\bNOT\s+taking\b|\bnot\s+taking\b|\bdeclined\b|\brefused\b",
                own,
                re.I,
            ) or re.search(
                r"\bdenies\b|\bno\s+$|\bdeclined\b|\bdeclines\b|\brefused\b|\brefuses\b|\bnever\s+(?:took|taken|tried)\b|"
                r"\bnot\s+(?:taking|on)\s+$",
                prefix,
                re.I,
            ):
                assertion = "negated"
            elif (
                re.search(r"\bwas\s+discussed\b|\bwill\s+consider\b", own, re.I)
                or re.search(
                    r"\b(?:talked\s+about|discussed|consider(?:ing)?(?:\s+trial\s+of)?|plan:\s*start|start|recommend(?:ed)?|asks\s+about|"
                    r"would\s+like\s+to\s+try)\b",
                    lead,
                    re.I,
                )
                and not re.search(r"\bstarted\b", lead, re.I)
            ):
                assertion = "planned"
            elif re.search(r"\bplan\s*:", sent.text[: m.start() - sent.start], re.I) and re.search(
                r"\bstart\b", lead, re.I
            ):
                assertion = "planned"
            else:
                assertion = "present"
            if (
                assertion == "planned"
                and re.search(r"\basks\s+about\b", lead, re.I)
                and not re.search(r"\btakes\s+it\b", own, re.I)
            ):
                assertion = "planned"
            # Trial window: the drug's own words up to the next drug (or the clause's end when the next drug is in another).
            window = text[m.end() : min(nxt, _clause_at(sent, m.start()).end if nxt > clause.end else nxt)]
            dm = _DOSE.match(text[m.end() : sent.end]) or _DOSE.match(re.sub(r"^\s*\(", "", text[m.end() : sent.end]))
            dose = (
                dm.group("dose").strip()
                if dm and dm.group("dose") and re.search(r"mg|[a-z]{2,}", dm.group("dose"), re.I)
                else None
            )
            if dose is None:
                lm = re.search(r"(PRN)\s*$", prefix)
                dose = lm.group(1) if lm else None
            if dose is None and re.search(r"dosepak\s+x\d", own):
                dose = re.search(r"dosepak\s+x\d", own).group(0)
            if dose is None:
                tm = re.match(r"\s*:\s*([^/]+?)\s*/", text[m.end() : sent.end])
                dose = tm.group(1) if tm and re.search(r"\d", tm.group(1)) else None
            # The trial's words: up to the next drug, cut where a new statement starts ("..., now on X").
            cut = re.search(r"[,;]\s+now\b", own)
            scope = own[: cut.start()] if cut else own
            del window
            outcome = None
            side = None
            both = re.search(r"([^;,.]*)\bwith\s+both\b", text[m.end() : sent.end])
            for name, p in _OUTCOMES:
                if p.search(scope) or p.search(lead) or (both and p.search(both.group(1))):
                    outcome = name
                    break
            if outcome is None and re.search(r"\bminimal\s+help\b", text[m.end() : sent.end], re.I):
                outcome = "partial-relief"
            if outcome is None and re.search(r"\bpt\s+reports\s+no\s+change\b", text[m.end() : sent.end], re.I):
                outcome = "no-relief"
            if outcome == "side-effects":
                sm = (
                    _SIDE_EFFECT.search(scope)
                    or _SIDE_EFFECT.search(lead)
                    or (both and _SIDE_EFFECT.search(both.group(1)))
                )
                side = sm.group(1).strip("'") if sm else None
            if outcome is None and re.search(r"^\s*(?:current\s+)?meds?\s*:|^\s*PRN\s*:", line, re.I):
                outcome = "ongoing"
            if outcome is None and re.search(r"\bcurrent\s+meds\b", note.lines[sent.line], re.I):
                outcome = "ongoing"
            if assertion != "present":
                outcome = side = None
            start = stop = None
            weeks = None
            hits = note.dates(scope)
            if assertion == "present":
                if hits:
                    start, stop = hits[0].value, hits[0].end_value
                    for a, b in zip(hits, hits[1:]):
                        if re.fullmatch(r"\s*(?:-|–|to)\s*", scope[a.end : b.start]):
                            start, stop = a.value, b.value
                            break
                    else:
                        # The words before a date say what it dates: a stop ("stopped 7/1") or a dose change
                        # ("increased ... in August"), neither of which is the start of the trial.
                        cued = [(h, _med_date_cue(scope[max(0, h.start - 60) : h.start])) for h in hits]
                        if any(cue for _, cue in cued):
                            first_cue = next(h.start for h, cue in cued if cue)
                            starts = [h.value for h, cue in cued if cue is None and h.start < first_cue]
                            stops = [h.value for h, cue in cued if cue == "stop"]
                            start = starts[0] if starts else None
                            stop = stops[0] if stops else None
                if re.search(r"\btold\s+to\s+stop\b", prefix, re.I) and start:
                    start, stop = None, start
                if start is None and not (_PT_WORD.search(lead) or _PT_WORD_I.search(lead)):
                    # a date in the lead-in dates the trial, unless it belongs to a PT course named there
                    lh = note.dates(lead)
                    start = lh[0].value if lh else None
                length = find_length(scope)
                if (
                    length
                    and length[1] in ("week", "month", "wk")
                    and not re.search(
                        r"\bover\s+\d+\s+weeks\b|\bfor\s+\d+\s+weeks\s+of\s+relief",
                        scope[max(0, length[2] - 6) : length[3]],
                        re.I,
                    )
                ):
                    if not re.search(r"titrating", scope[: length[2]], re.I) and not re.search(
                        r"relief\s+of", scope[: length[2]], re.I
                    ):
                        weeks = as_weeks(length[0], length[1])
                        if weeks == int(weeks):
                            weeks = int(weeks)
            facts.append(
                _fact(
                    note,
                    "medication-trial",
                    assertion,
                    m.start(),
                    m.end(),
                    sent,
                    drug=drug,
                    start=start,
                    stop=stop,
                    weeks=weeks,
                    dose=dose,
                    outcome=outcome,
                    side_effect=side,
                )
            )
    return _first_of_each(facts, lambda f: (f.get("drug"), f.assertion, f.sentence_start))


# ------------------------------------------------------------------ symptom onset and duration

_SYMPTOMS = [
    (name, re.compile(p, re.I))
    for name, p in (
        ("back-and-leg-pain", r"\bback\s+and\s+(?:right\s+|left\s+|R\s+|L\s+)?leg\s+pain\b"),
        (
            "leg-pain",
            r"(?:\b(?:R|L|right|left|bilat\w*)\s+)?\bleg\s+(?:pain|symptoms|sx)\b|\bsciatica\b|\bneurogenic\s+claudication\b|"
            r"\bpain\s+in\s+both\s+legs\b|\bpain\s+down\s+the\s+\w+\s+leg\b|\bradiation\b",
        ),
        ("back-pain", r"\b(?:axial\s+)?LBP\b|\blow\s+back\s+(?:pain|stiffness)\b|\bback\s+pain\b"),
        ("neck-pain", r"\bneck\s+pain\b"),
        ("other", r"\barm\s+paresthesias\b|\bsymptoms\s+recurred\b|\bsymptom\s+onset\b"),
    )
]


def _symptom_facts(note: _Note) -> list[NoteFact]:
    text = note.text
    facts: list[NoteFact] = []
    for sent in note.sents:
        if _INSTRUCTION.search(sent.text):
            continue
        for clause in sent.clauses:
            c = clause.text
            taken: list[tuple[int, int]] = []
            for symptom, p in _SYMPTOMS:
                for m in p.finditer(c):
                    if any(a < m.end() and m.start() < b for a, b in taken):
                        continue
                    taken.append((m.start(), m.end()))
                    a0, a1 = clause.start + m.start(), clause.start + m.end()
                    before = text[clause.start : a0]
                    negated = bool(re.search(r"\bdenies\b|^\s*no\s*$", before, re.I))
                    if symptom == "leg-pain" and m.group(0).lower() == "radiation":
                        if not re.search(r"\bno\s*$", before, re.I):
                            continue
                        negated = True
                    if negated:
                        facts.append(
                            _fact(
                                note,
                                "symptom-duration",
                                "negated",
                                a0,
                                a1,
                                sent,
                                symptom=symptom,
                                onset=None,
                                duration_months=None,
                            )
                        )
                        continue
                    rest = c[m.end() :]
                    around = c
                    if re.search(r"\b(?:relief|change|improvement)\s+(?:of|in)\s+(?:his\s+|her\s+)?$", before, re.I):
                        continue
                    if (
                        symptom == "other"
                        and m.group(0).lower() == "symptom onset"
                        and re.search(r"low\s+back.*radiating.*leg", text, re.I | re.S)
                    ):
                        symptom = "back-and-leg-pain"
                    onset = duration = None
                    length = find_length(re.sub(r"\b\d+/10\b", "", rest))
                    lm = (
                        re.search(
                            r"\b(?:x|for|\(?>|over)\s*(?:about\s+)?", rest[: length[2] + 1] if length else "", re.I
                        )
                        if length
                        else None
                    )
                    ago = re.search(r"\bago\b", rest[length[3] : length[3] + 6]) if length else None
                    if length and ago is None and (lm or re.match(r"\s*\(?>", rest)):
                        duration = as_months(length[0], length[1])
                        if re.match(r"\s*\(>", rest) or re.search(r">\s*$", rest[: length[2]]):
                            duration = as_months(length[0], length[1])
                    else:
                        hits = note.dates(rest)
                        if hits and (
                            re.search(
                                r"\bsince|\bstarted|\bbegan|\bin\b|\bago\b|\bonset|recurred|noticed", around, re.I
                            )
                        ):
                            onset = hits[0].value
                        elif not re.search(r"\bsince\b|\bforever\b|\bchronic\b", around, re.I):
                            continue
                    if duration is not None and duration == int(duration):
                        duration = int(duration)
                    if onset is None and duration is None and not re.search(r"\bsince\b|\bforever\b", around, re.I):
                        continue
                    if symptom == "other" and m.group(0).lower() == "symptom onset":
                        pass
                    facts.append(
                        _fact(
                            note,
                            "symptom-duration",
                            "present",
                            a0,
                            a1,
                            sent,
                            symptom=symptom,
                            onset=onset,
                            duration_months=duration,
                        )
                    )
    return facts


# ------------------------------------------------------------------ red flags

_FLAGS = [
    (name, re.compile(p, re.I))
    for name, p in (
        ("cauda-equina", r"\bcauda\s+equina(?:\s+syndrome)?\b|\bCES\b"),
        (
            "saddle-anaesthesia",
            r"\bsaddle\s+(?:an(?:a)?esthesia|numbness|paresthesias?)\b|\bperineal\s+numbness\b|\bnumbness\s+\"down\s+there\"|"
            r"\bnumbness\s+in\s+the\s+groin\b",
        ),
        (
            "bowel-bladder-dysfunction",
            r"\b(?:bowel(?:/bladder|\s+or\s+bladder|\s+and\s+bladder)?|bladder)\s+(?:incontinence|changes|dysfunction|problems|function)\b|"
            r"\b(?:urinary|fecal|stress)?\s*incontinence\b|\burinary\s+retention\b|\bdifficulty\s+(?:starting\s+urine\s+stream|voiding)\b|"
            r"\burgency\b",
        ),
        (
            "progressive-weakness",
            r"\bprogressive\s+(?:weakness|\w+\s+foot\s+drop|foot\s+drop)\b|\bweakness\s+is\s+(?:clearly\s+)?progressing\b|"
            r"\bleg\s+weakness\s+getting\s+worse\b|\bweakness\b",
        ),
        (
            "malignancy",
            r"\b(?:(?:breast|prostate|lung|thyroid|pancreatic|colon|kidney|renal)\s+)?cancer\b|\bmalignancy\b|\bmyeloma\b|\bmetasta\w+|\blymphoma\b",
        ),
        ("infection", r"\bosteomyelitis\b|\bdiscitis\b|\bepidural\s+abscess\b|\bTB\b|\btuberculosis\b|\bbacteremia\b"),
        ("fracture", r"\bfracture\w*|\bfx\b"),
        (
            "fever-weight-loss",
            r"\bfevers?\b|\bfebrile\b|\bnight\s+sweats\b|\bweight\s+loss\b|\blost\s+(?:about\s+)?\w+\s+pounds\b|"
            r"\bconstitutional\s+symptoms\b",
        ),
    )
]


def _red_flag_facts(note: _Note) -> list[NoteFact]:
    text = note.text
    facts: list[NoteFact] = []
    for sent in note.sents:
        if _INSTRUCTION.search(sent.text) or re.search(
            r"\bred\s+flags?\s*:\s*none\b|\ball\s+other\s+systems\b", sent.text, re.I
        ):
            continue
        for clause in sent.clauses:
            c = clause.text
            taken: list[tuple[int, int]] = []
            for kind, p in _FLAGS:
                for m in p.finditer(c):
                    if any(a < m.end() and m.start() < b for a, b in taken):
                        continue
                    taken.append((m.start(), m.end()))
                    a0, a1 = clause.start + m.start(), clause.start + m.end()
                    before, after = text[clause.start : a0], text[a1 : clause.end]
                    word = m.group(0).lower()
                    if (
                        kind == "fracture"
                        and re.search(r"\bhip\s+fracture|osteoporosis", c, re.I)
                        and not _family(text, sent, note.lines, note.family_lines, a0, clause)
                    ):
                        continue
                    if (
                        re.search(r"\bintentional\b", before, re.I)
                        and kind == "fever-weight-loss"
                        and not re.search(r"\bunintentional\b", before, re.I)
                    ):
                        assertion = "negated"
                    elif _family(text, sent, note.lines, note.family_lines, a0, clause):
                        assertion = "family"
                    elif _HEDGE_BEFORE.search(before[-40:]):
                        assertion = "hedged"
                    elif (
                        _negated_before(before)
                        or re.match(
                            r"\s*(?::\s*(?:N|no|none|neg)\b|was\s+ruled\s+out|ruled\s+out|intact|(?:work-?up|w/u|screen)\s+(?:was\s+)?negative|"
                            r"\s*(?:was\s+)?negative)",
                            after,
                            re.I,
                        )
                        or re.search(
                            r"\b(?:was|were|has\s+been|have\s+been)?\s*(?:ruled\s+out|excluded)\b", after, re.I
                        )
                        or re.search(r"\b(?:GU|GI|neuro)\s*:\s*neg\s+for\s+$", before, re.I)
                    ):
                        assertion = "negated"
                    elif (
                        re.search(r"\bdenies\b", sent.text[: a0 - sent.start], re.I)
                        and re.search(r",|\bor\b", before)
                        and not re.search(r"\+", before)
                    ):
                        assertion = "negated"
                    elif (
                        _HISTORICAL.search(c) or re.search(r"\b(?:19|20)\d{2}\b[^.;]*\bs/p\b", after, re.I)
                    ) and not re.search(r"\bnew\b|\bnow\b|\bdiagnosed\s+\d", c, re.I):
                        assertion = "historical"
                    else:
                        assertion = "present"
                    if kind == "progressive-weakness" and word == "weakness" and assertion == "present":
                        continue  # weakness alone is no sign of progression
                    if (
                        kind == "malignancy"
                        and word.endswith("cancer")
                        and assertion == "present"
                        and re.search(r"\bnever|\bno\b", before, re.I)
                    ):
                        assertion = "negated"
                    if kind == "bowel-bladder-dysfunction" and word == "urgency" and assertion == "present":
                        continue  # urgency alone is no red flag
                    facts.append(_fact(note, "red-flag", assertion, a0, a1, sent, kind=kind))
    return _first_of_each(facts, lambda f: (f.sentence_start, f.get("kind"), f.assertion))
