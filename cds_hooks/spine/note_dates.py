"""Dates and lengths of time in clinical-note text, resolved against the note's own date.

The conventions are those of eval/note_text/README.md ("Dates"): ISO `YYYY-MM-DD`, or `YYYY-MM` /
`YYYY` when that is all the text makes certain; US order for numeric dates; a month without a year is
the most recent such month not after the note's month; "N weeks ago" is an exact day, "N months ago"
a month, "N years ago" a year; "a few weeks ago", "last week", "years ago" are not certain (None).
Lengths: months, or weeks, as numbers; months x 4.345 = weeks and weeks x 7 / 30.44 = months.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
WORD_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "eighteen": 18,
    "twenty": 20,
    "twenty-four": 24,
}
NUMBER = r"(?:\d+(?:\.\d+)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|eighteen|twenty(?:-four)?)"


def number(word: str) -> float | None:
    w = word.lower()
    if w in WORD_NUMBERS:
        return float(WORD_NUMBERS[w])
    try:
        return float(w)
    except ValueError:
        return None


@dataclass(frozen=True)
class DateHit:
    start: int
    end: int
    value: str  # YYYY, YYYY-MM or YYYY-MM-DD
    end_value: str | None = None  # the second date of a range


def _year(y: str) -> int:
    n = int(y)
    return n + 2000 if n < 100 else n


def _month_of(word: str) -> int:
    return MONTHS[word.lower().rstrip(".")[:3]]


def _ym(y: int, m: int) -> str:
    return f"{y:04d}-{m:02d}"


def _ymd(y: int, m: int, d: int) -> str | None:
    try:
        return dt.date(y, m, d).isoformat()
    except ValueError:
        return None


def _recent_month(month: int, note: dt.date) -> str:
    """A month without a year: the most recent such month not after the note's month."""
    year = note.year if month <= note.month else note.year - 1
    return _ym(year, month)


def _months_before(note: dt.date, n: int) -> str:
    total = note.year * 12 + (note.month - 1) - n
    return _ym(total // 12, total % 12 + 1)


def _thanksgiving(year: int) -> dt.date:
    first = dt.date(year, 11, 1)
    return first + dt.timedelta(days=(3 - first.weekday()) % 7 + 21)


_PATTERNS: list[tuple[str, re.Pattern]] = [
    (name, re.compile(p, re.I))
    for name, p in (
        # ranges whose first date borrows the second's year: 7/15-8/26/26, Jan-May 2026, Feb 3 - Mar 10, 2026
        ("md-mdy", r"(?<![\d/])(\d{1,2})/(\d{1,2})\s*[-–]\s*(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"),
        ("mon-mon-y", rf"\b({_MONTH})\s*[-–]\s*({_MONTH})\s+(\d{{4}})\b"),
        # "between October and December of last year": both months of the named year
        (
            "mon-mon-rel",
            rf"\b({_MONTH})\s+(?:and|to|through)\s+({_MONTH})\s+(?:of\s+)?(last|this)\s+year\b",
        ),
        (
            "mond-mond-y",
            rf"\b({_MONTH})\s+(\d{{1,2}})\s*(?:[-–]|\bto\b|\bthrough\b)\s*({_MONTH})\s+(\d{{1,2}}),?\s+(\d{{4}})\b",
        ),
        ("mdy", r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\d/])"),
        ("my", r"(?<![\d/])(\d{1,2})/(\d{4})(?![\d/])"),
        ("mondy", rf"\b({_MONTH})\s+(\d{{1,2}}),?\s+(\d{{4}})\b"),
        ("mony", rf"\b({_MONTH})\s+(?:of\s+)?(\d{{4}})\b"),
        ("season-y", r"\b(?:spring|summer|fall|autumn|winter)\s+(?:of\s+)?((?:19|20)\d{2})\b"),
        ("y", r"(?<![\d/.])((?:19|20)\d{2})(?![\d/])"),
        (
            "ago",
            rf"(?<!over )(?<!than )(?<!few )(?<![>+<])\b(?:about\s+|approximately\s+|~\s*)?({NUMBER})\s+(day|week|wk|month|mo|year|yr)s?\s+ago\b",
        ),
        ("last-year", r"\blast\s+(?:year|fall|autumn|spring|summer|winter)\b"),
        ("this-year", r"\b(?:this\s+year|the\s+summer|this\s+summer|this\s+spring)\b"),
        ("today", r"\btoday\b"),
        ("christmas", r"\bchristmas\b"),
        ("new-year", r"\bnew\s+year(?:'s)?\b"),
        ("thanksgiving", r"\bthanksgiving(?:\s+day)?\b"),
        ("mon", rf"\b(?:in|since|from|of|during|by|last|early|late|mid-?)\s+({_MONTH})(?!\s*\d)\b"),
    )
]


def find_dates(text: str, note_date: dt.date) -> list[DateHit]:
    """Every date expression in `text`, left to right, the longest one at each place."""
    hits: list[DateHit] = []
    taken: list[tuple[int, int]] = []
    for name, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            hit = _resolve(name, m, note_date)
            if hit is not None:
                hits.append(hit)
                taken.append((m.start(), m.end()))
    return sorted(hits, key=lambda h: h.start)


def _resolve(name: str, m: re.Match, note: dt.date) -> DateHit | None:
    g = m.groups()
    s, e = m.start(), m.end()
    if name == "md-mdy":
        y = _year(g[4])
        a, b = _ymd(y, int(g[0]), int(g[1])), _ymd(y, int(g[2]), int(g[3]))
        return DateHit(s, e, a, b) if a and b else None
    if name == "mon-mon-rel":
        y = note.year - (1 if g[2].lower() == "last" else 0)
        return DateHit(s, e, _ym(y, _month_of(g[0])), _ym(y, _month_of(g[1])))
    if name == "mon-mon-y":
        y = int(g[2])
        return DateHit(s, e, _ym(y, _month_of(g[0])), _ym(y, _month_of(g[1])))
    if name == "mond-mond-y":
        y = int(g[4])
        a, b = _ymd(y, _month_of(g[0]), int(g[1])), _ymd(y, _month_of(g[2]), int(g[3]))
        return DateHit(s, e, a, b) if a and b else None
    if name == "mdy":
        v = _ymd(_year(g[2]), int(g[0]), int(g[1]))
        return DateHit(s, e, v) if v else None
    if name == "my":
        return DateHit(s, e, _ym(int(g[1]), int(g[0]))) if 1 <= int(g[0]) <= 12 else None
    if name == "mondy":
        v = _ymd(int(g[2]), _month_of(g[0]), int(g[1]))
        return DateHit(s, e, v) if v else None
    if name == "mony":
        return DateHit(s, e, _ym(int(g[1]), _month_of(g[0])))
    if name in ("season-y", "y"):
        return DateHit(s, e, g[0])
    if name == "ago":
        n = number(g[0])
        if n is None or n != int(n):
            return None
        n = int(n)
        unit = g[1].lower()
        if unit == "day":
            return DateHit(s, e, (note - dt.timedelta(days=n)).isoformat())
        if unit in ("week", "wk"):
            return DateHit(s, e, (note - dt.timedelta(days=7 * n)).isoformat())
        if unit in ("month", "mo"):
            return DateHit(s, e, _months_before(note, n))
        return DateHit(s, e, str(note.year - n))
    if name == "last-year":
        return DateHit(s, e, str(note.year - 1))
    if name == "this-year":
        return DateHit(s, e, str(note.year))
    if name == "today":
        return DateHit(s, e, note.isoformat())
    if name == "christmas":
        year = note.year if note >= dt.date(note.year, 12, 25) else note.year - 1
        return DateHit(s, e, f"{year}-12-25")
    if name == "new-year":
        return DateHit(s, e, f"{note.year}-01-01")
    if name == "thanksgiving":
        day = _thanksgiving(note.year)
        return DateHit(s, e, (day if day <= note else _thanksgiving(note.year - 1)).isoformat())
    if name == "mon":
        month_start = m.start(1)
        return DateHit(month_start, e, _recent_month(_month_of(g[0]), note))
    return None


def months_before(note: dt.date, months: float) -> str:
    """The month `months` before the note ("no cigarettes x 8 months")."""
    return _months_before(note, int(round(months)))


_LENGTH = re.compile(
    rf"(?P<more>>\s*|over\s+|more\s+than\s+)?(?:about\s+|approximately\s+|~\s*)?(?P<n>{NUMBER}|a\s+year\s+and\s+a\s+half)"
    r"(?:\s*-\s*|\s+)(?P<unit>days?|weeks?|wks?|wk|months?|mos?|years?|yrs?|y)\b",
    re.I,
)


def find_length(text: str) -> tuple[float, str, int, int] | None:
    """The first stated length of time: (amount, 'month'|'week'|'day'|'year', start, end)."""
    for m in _LENGTH.finditer(text):
        if re.match(r"\s+ago\b", text[m.end() :]):
            continue  # "2 months ago" is a point in time, not a length
        raw = m.group("n").lower()
        n = 1.5 if raw.startswith("a year and") else number(raw)
        if n is None:
            continue
        unit = m.group("unit").lower()
        if raw.startswith("a year and"):
            unit = "month"
            n = 18
        kind = (
            "day"
            if unit.startswith("d")
            else "week"
            if unit.startswith("w")
            else "month"
            if unit.startswith("mo")
            else "year"
        )
        return n, kind, m.start(), m.end()
    return None


def as_months(n: float, kind: str) -> float:
    if kind == "year":
        return round(n * 12, 1)
    if kind == "week":
        return round(n * 7 / 30.44, 1)
    if kind == "day":
        return round(n / 30.44, 1)
    return n


def as_weeks(n: float, kind: str) -> float:
    if kind == "month":
        return round(n * 4.345, 1)
    if kind == "year":
        return round(n * 52.14, 1)
    if kind == "day":
        return round(n / 7, 1)
    return n
