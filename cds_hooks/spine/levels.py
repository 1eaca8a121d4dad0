"""Spinal level normalisation: every way a record names a lumbar level becomes an interspace code.

Interspace codes are those of the project code system `spinal-interspace` (docs/criteria.md):
`T12-L1`, `L1-L2`, `L2-L3`, `L3-L4`, `L4-L5`, `L5-S1`.
"""

from __future__ import annotations

import re

INTERSPACE_SYSTEM = "http://fusion-cds.example.org/fhir/CodeSystem/spinal-interspace"

# Vertebrae from T12 to S1, in order; an interspace is a pair of neighbours.
_VERTEBRAE = ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
INTERSPACES = [f"{a}-{b}" for a, b in zip(_VERTEBRAE, _VERTEBRAE[1:])]

# SNOMED CT intervertebral disc structures (as listed in DICOM CID 7604), one per interspace.
SNOMED = "http://snomed.info/sct"
SNOMED_DISCS = {
    "76206002": "T12-L1",
    "80064006": "L1-L2",
    "67459009": "L2-L3",
    "62551000": "L3-L4",
    "84020006": "L4-L5",
    "715056000": "L5-S1",
}

# SNOMED CT vertebra structures (DICOM CID 7603), T12 to L5: two of them name the interspaces between.
SNOMED_VERTEBRAE = {
    "23215003": "T12",
    "66794005": "L1",
    "14293000": "L2",
    "36470004": "L3",
    "11994002": "L4",
    "49668003": "L5",
}

# "L4-5", "L4/L5", "L5S1", "L4–S1", "L4 - L5", "L4 to S1"
_RANGE = re.compile(
    r"\b([TLS])\s*(\d{1,2})\s*(?:-|/|–|—|\bto\b|\bthrough\b|\s)?\s*([TLS])?\s*(\d{1,2})\b",
    re.IGNORECASE,
)
_LUMBOSACRAL = re.compile(r"\blumbo-?sacral\b", re.IGNORECASE)


def _vertebra(letter: str, number: str) -> str | None:
    name = f"{letter.upper()}{int(number)}"
    return name if name in _VERTEBRAE else None


def interspaces_in(text: str | None) -> list[str]:
    """All interspaces a free-text level names, in spinal order, without duplicates.

    "L4-S1" spans two interspaces (L4-L5 and L5-S1); a bare "lumbosacral" means L5-S1.
    """
    if not text:
        return []
    found: list[str] = []
    for m in _RANGE.finditer(text):
        upper = _vertebra(m.group(1), m.group(2))
        lower_letter = m.group(3) or m.group(1)
        lower = _vertebra(lower_letter, m.group(4))
        if upper is None or lower is None:
            continue
        i, j = _VERTEBRAE.index(upper), _VERTEBRAE.index(lower)
        if j <= i:
            continue
        found.extend(INTERSPACES[i:j])
    if not found and _LUMBOSACRAL.search(text):
        found.append("L5-S1")
    return [s for s in INTERSPACES if s in found]


def interspaces_of_concept(concept: dict | None) -> list[str]:
    """Interspaces named by a CodeableConcept: project codings first, then displays, then text."""
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding") if isinstance(concept.get("coding"), list) else []
    coded = []
    for c in codings:
        if not isinstance(c, dict):
            continue
        if c.get("system") == INTERSPACE_SYSTEM and c.get("code") in INTERSPACES:
            coded.append(c["code"])
        elif c.get("system") == SNOMED and c.get("code") in SNOMED_DISCS:
            coded.append(SNOMED_DISCS[c["code"]])
    if coded:
        return [s for s in INTERSPACES if s in coded]
    texts = [c.get("display") for c in codings if isinstance(c, dict)] + [concept.get("text")]
    found: list[str] = []
    for text in texts:
        if isinstance(text, str):
            found.extend(interspaces_in(text))
    return [s for s in INTERSPACES if s in found]


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
        ranks = sorted(_VERTEBRAE.index(v) for v in vertebrae)
        found.extend(INTERSPACES[ranks[0] : ranks[-1]])
    return [s for s in INTERSPACES if s in found]


def interspace_coding(interspace: str) -> dict:
    """A CodeableConcept for one interspace, as the service writes it into resources it creates."""
    return {
        "coding": [{"system": INTERSPACE_SYSTEM, "code": interspace, "display": f"{interspace} interspace"}],
        "text": interspace,
    }


def explicit_interspaces_in(text: str | None) -> list[str]:
    """Interspaces a text names by its vertebrae ("L4-L5", "L4 to S1"); a region word names none.

    For text that is not a body site, such as an order's description: "lumbosacral fusion" says
    where, not which level.
    """
    return interspaces_in(_LUMBOSACRAL.sub(" ", text)) if text else []


def levels_span(interspaces: list[str]) -> str:
    """The shortest way to write a set of interspaces: "L3-S1" for L3-L4, L4-L5, L5-S1; a list otherwise."""
    ranks = sorted(INTERSPACES.index(s) for s in set(interspaces) if s in INTERSPACES)
    if len(ranks) > 1 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{_VERTEBRAE[ranks[0]]}-{_VERTEBRAE[ranks[-1] + 1]}"
    return ", ".join(INTERSPACES[r] for r in ranks)
