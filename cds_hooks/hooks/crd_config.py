"""Da Vinci CRD 2.2 hook configuration: the options a service offers and the values a client sends.

CRD 2.2.1, "CDS Hooks Deviations and Enhancements", "New hook configuration mechanism":

- discovery declares `davinci-crd.version` (the first two parts of the CRD version, dev-1) and
  `davinci-crd.configuration-options`, each option with `code`, `type` (JSON boolean | integer),
  `name`, `description` and a `default` (dev-4); a boolean per type of card returned (dev-5), codes
  from the CRD Response Types where one applies (dev-7), unique codes, names and descriptions (dev-8);
- a call may carry `extension["davinci-crd.configuration"]`, one object keyed by option code. The
  service behaves as it says (dev-14), never requires it (dev-15), and ignores what it does not
  support (dev-17). A value of the wrong type, or an integer out of range, is a combination the
  service cannot honour: it is set aside and the option keeps its default, and the response's
  evaluation extension names what was set aside (dev-6: handled gracefully and reported).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("cds_hooks.crd")

CRD_VERSIONS = ("2.2",)
VERSION_KEY = "davinci-crd.version"
OPTIONS_KEY = "davinci-crd.configuration-options"
REQUEST_KEY = "davinci-crd.configuration"

COVERAGE_INFO = "coverage-info"
# The criteria card is the payer's guideline for the ordered procedure, checked against the record:
# of the CRD Response Types it is closest to `guideline` (a judgement, docs/crd.md).
CRITERIA_CARD = "guideline"
MAX_CARDS = "max-cards"

OPTIONS: tuple[dict, ...] = (
    {
        "code": COVERAGE_INFO,
        "type": "boolean",
        "name": "Coverage information",
        "description": "Attach the CRD coverage-information extension to each fusion order (a systemActions update).",
        "default": True,
    },
    {
        "code": CRITERIA_CARD,
        "type": "boolean",
        "name": "Medical-necessity criteria card",
        "description": "Return the card that checks the order against the payer's criteria, criterion by criterion.",
        "default": True,
    },
    {
        "code": MAX_CARDS,
        "type": "integer",
        "name": "Most cards",
        "description": "Return at most this many cards (one per surgical case, in order); 0 returns none.",
        "default": 10,
    },
)


def discovery_extension() -> dict:
    """The `extension` object of this service's discovery entry."""
    return {VERSION_KEY: list(CRD_VERSIONS), OPTIONS_KEY: [dict(o) for o in OPTIONS]}


@dataclass(frozen=True)
class HookConfiguration:
    """The options in force for one call: the client's values where usable, defaults otherwise."""

    coverage_info: bool = True
    criteria_card: bool = True
    max_cards: int = 10
    set_aside: tuple[str, ...] = field(default=())  # option codes sent with an unusable value

    def limit_cards(self, cards: list[dict]) -> list[dict]:
        if not self.criteria_card:
            return []
        return cards[: self.max_cards]


def _usable(option: dict, value) -> bool:
    if option["type"] == "boolean":
        return isinstance(value, bool)
    # JSON integer: bool is an int in Python and is not one here; the bound keeps the answer sane.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000


def read_configuration(body: dict) -> HookConfiguration:
    """The configuration a hook request asks for (dev-12: one object keyed by option code)."""
    extension = body.get("extension") if isinstance(body, dict) else None
    sent = extension.get(REQUEST_KEY) if isinstance(extension, dict) else None
    values = {o["code"]: o["default"] for o in OPTIONS}
    set_aside: list[str] = []
    if isinstance(sent, dict):
        for option in OPTIONS:
            if option["code"] not in sent:
                continue
            if _usable(option, sent[option["code"]]):
                values[option["code"]] = sent[option["code"]]
            else:
                set_aside.append(option["code"])
    elif sent is not None:
        set_aside.append(REQUEST_KEY)
    if set_aside:
        log.info("CRD configuration values set aside", extra={"fields": {"options": set_aside}})
    return HookConfiguration(
        coverage_info=values[COVERAGE_INFO],
        criteria_card=values[CRITERIA_CARD],
        max_cards=values[MAX_CARDS],
        set_aside=tuple(set_aside),
    )
