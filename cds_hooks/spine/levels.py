"""Spinal level normalisation: every way a record names a spinal level becomes an interspace code.

Interspace codes are those of the project code system `spinal-interspace` (docs/criteria.md), such
as `L4-L5` or `C5-C6`. What the spine is made of is data, not code: `data/levels.json` lists the
vertebrae in order, the interspaces of each region, the words that name one interspace
("lumbosacral"), and the SNOMED CT codes of discs and vertebrae (DICOM CID 7604 and 7603). A rule pack
names its region (pack.json `spine.region`); a level of another region is never a level of that
pack (`Region.split`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_DATA = json.loads((Path(__file__).resolve().parent / "data" / "levels.json").read_text(encoding="utf-8"))

INTERSPACE_SYSTEM = _DATA["interspaceSystem"]
SNOMED = "http://snomed.info/sct"

# Vertebrae from the highest to the lowest the data knows; an interspace is a pair of neighbours.
VERTEBRAE: list[str] = list(_DATA["vertebrae"])
_RANK = {v: i for i, v in enumerate(VERTEBRAE)}


@dataclass(frozen=True)
class Region:
    """One region of the spine: its name as pack.json says it and its interspaces, in spinal order."""

    name: str
    interspaces: tuple[str, ...]
    junctions: tuple[tuple[re.Pattern, str], ...] = ()

    def __contains__(self, interspace: object) -> bool:
        return interspace in self.interspaces

    def split(self, levels) -> tuple[list[str], list[str]]:
        """(this region's levels, other regions' levels), each in spinal order without duplicates."""
        named = set(levels)
        own = [s for s in INTERSPACES if s in named and s in self.interspaces]
        other = [s for s in INTERSPACES if s in named and s not in self.interspaces]
        return own, other


REGIONS: dict[str, Region] = {
    name: Region(
        name,
        tuple(spec["interspaces"]),
        tuple((re.compile(j["pattern"], re.IGNORECASE), j["interspace"]) for j in spec.get("junctions", [])),
    )
    for name, spec in _DATA["regions"].items()
}
# Every interspace some region has, in spinal order (a pair of neighbours no region lists, such as
# C1-C2, which has no disc, is no interspace).
_KNOWN = {s for r in REGIONS.values() for s in r.interspaces}
INTERSPACES: list[str] = [f"{a}-{b}" for a, b in zip(VERTEBRAE, VERTEBRAE[1:]) if f"{a}-{b}" in _KNOWN]
_JUNCTIONS = [j for r in REGIONS.values() for j in r.junctions]

# SNOMED CT intervertebral disc structures, one per interspace; vertebra structures, two of which
# name the interspaces between them.
SNOMED_DISCS: dict[str, str] = dict(_DATA["snomed"]["discs"])
SNOMED_VERTEBRAE: dict[str, str] = dict(_DATA["snomed"]["vertebrae"])


def report_junctions() -> list[tuple[str, str]]:
    """(pattern, interspace) of the words a radiology report uses for one interspace ("L/S junction")."""
    return [(j["pattern"], j["interspace"]) for spec in _DATA["regions"].values() for j in spec["reportJunctions"]]


def report_junction_headers() -> list[str]:
    """The patterns of those words as a report writes them in a level header ("Lumbosacral junction:")."""
    return [j["header"] for spec in _DATA["regions"].values() for j in spec["reportJunctions"]]


def region(name: str) -> Region:
    """The region a pack names (pack.json `spine.region`); ValueError naming the known ones otherwise."""
    found = REGIONS.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f"unknown spinal region {name!r} (known: {', '.join(sorted(REGIONS))})")
    return found


def region_of_interspace(interspace: str) -> str | None:
    """The name of the region an interspace belongs to, or None for a code that is no interspace."""
    return next((r.name for r in REGIONS.values() if interspace in r.interspaces), None)


def between(upper: str, lower: str) -> list[str]:
    """The interspaces from vertebra `upper` down to vertebra `lower` ("L3", "S1": L3-L4, L4-L5, L5-S1)."""
    i, j = _RANK.get(upper), _RANK.get(lower)
    if i is None or j is None or j <= i:
        return []
    return [s for s in (f"{a}-{b}" for a, b in zip(VERTEBRAE[i:j], VERTEBRAE[i + 1 : j + 1])) if s in _KNOWN]


# "L4-5", "L4/L5", "L5S1", "L4–S1", "L4 - L5", "L4 to S1", "C5-6": the vertebra letters come from the data.
_LETTERS = "".join(sorted({v[0] for v in VERTEBRAE}))
_RANGE = re.compile(
    rf"\b([{_LETTERS}])\s*(\d{{1,2}})\s*(?:-|/|–|—|\bto\b|\bthrough\b|\s)?\s*([{_LETTERS}])?\s*(\d{{1,2}})\b",
    re.IGNORECASE,
)


def _vertebra(letter: str, number: str) -> str | None:
    name = f"{letter.upper()}{int(number)}"
    return name if name in _RANK else None


def in_spinal_order(found) -> list[str]:
    """Known interspaces among `found`, in spinal order, each once."""
    named = set(found)
    return [s for s in INTERSPACES if s in named]


def interspaces_in(text: str | None) -> list[str]:
    """All interspaces a free-text level names, in spinal order, without duplicates.

    "L4-S1" spans two interspaces (L4-L5 and L5-S1); a junction word alone ("lumbosacral") names the
    interspace the data gives it.
    """
    if not text:
        return []
    found: list[str] = []
    for m in _RANGE.finditer(text):
        upper = _vertebra(m.group(1), m.group(2))
        lower = _vertebra(m.group(3) or m.group(1), m.group(4))
        if upper is None or lower is None:
            continue
        found.extend(between(upper, lower))
    if not found:
        found = [interspace for pattern, interspace in _JUNCTIONS if pattern.search(text)]
    return in_spinal_order(found)


def interspaces_of_concept(concept: dict | None) -> list[str]:
    """Interspaces named by a CodeableConcept: project codings first, then displays, then text."""
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding") if isinstance(concept.get("coding"), list) else []
    coded = []
    for c in codings:
        if not isinstance(c, dict):
            continue
        if c.get("system") == INTERSPACE_SYSTEM and c.get("code") in _KNOWN:
            coded.append(c["code"])
        elif c.get("system") == SNOMED and c.get("code") in SNOMED_DISCS:
            coded.append(SNOMED_DISCS[c["code"]])
    if coded:
        return in_spinal_order(coded)
    texts = [c.get("display") for c in codings if isinstance(c, dict)] + [concept.get("text")]
    found: list[str] = []
    for text in texts:
        if isinstance(text, str):
            found.extend(interspaces_in(text))
    return in_spinal_order(found)


def interspaces_of_sites(concepts) -> list[str]:
    """Interspaces named by a list of bodySite concepts (ServiceRequest.bodySite, Procedure.bodySite).

    Each concept counts on its own (`interspaces_of_concept`); besides, SNOMED CT vertebra structures
    across the list name the interspaces between the highest and the lowest vertebra ("L4 vertebra"
    and "L5 vertebra" are L4-L5), as a text range does. One vertebra alone names no interspace.
    """
    if not isinstance(concepts, list):
        return []
    found: list[str] = []
    vertebrae: set[str] = set()
    for concept in concepts:
        found.extend(interspaces_of_concept(concept))
        codings = concept.get("coding") if isinstance(concept, dict) and isinstance(concept.get("coding"), list) else []
        vertebrae.update(
            SNOMED_VERTEBRAE[c["code"]]
            for c in codings
            if isinstance(c, dict) and c.get("system") == SNOMED and c.get("code") in SNOMED_VERTEBRAE
        )
    if len(vertebrae) >= 2:
        ranked = sorted(vertebrae, key=_RANK.__getitem__)
        found.extend(between(ranked[0], ranked[-1]))
    return in_spinal_order(found)


def interspace_coding(interspace: str) -> dict:
    """A CodeableConcept for one interspace, as the service writes it into resources it creates."""
    return {
        "coding": [{"system": INTERSPACE_SYSTEM, "code": interspace, "display": f"{interspace} interspace"}],
        "text": interspace,
    }


def explicit_interspaces_in(text: str | None) -> list[str]:
    """Interspaces a text names by its vertebrae ("L4-L5", "L4 to S1"); a junction word names none.

    For text that is not a body site, such as an order's description: "lumbosacral fusion" says
    where, not which level.
    """
    if not text:
        return []
    for pattern, _ in _JUNCTIONS:
        text = pattern.sub(" ", text)
    return interspaces_in(text)


def levels_span(interspaces: list[str]) -> str:
    """The shortest way to write a set of interspaces: "L3-S1" for L3-L4, L4-L5, L5-S1; a list otherwise."""
    ordered = in_spinal_order(interspaces)
    if len(ordered) > 1:
        upper, lower = ordered[0].split("-")[0], ordered[-1].split("-")[1]
        if between(upper, lower) == ordered:
            return f"{upper}-{lower}"
    return ", ".join(ordered)
