"""Go-live controls: shadow mode and the per-site switch.

CDS Hooks 2.0 ("HTTP Response"): a service with nothing to say answers `{"cards": []}`, and the EHR
carries on. Both controls use that answer:

- **shadow**: the call is evaluated and recorded in full (the audit row keeps the response that
  would have been shown), and the caller gets `{"cards": []}`;
- **off**: the call is answered `{"cards": []}` at once, without reading patient data or running
  the CQL engine, and recorded as such;
- **live**: the normal answer.

A **site** is what `site_by` names: the verified caller JWT's `tenant` claim (its `iss` when it has
none), its `iss`, or the request's `fhirServer`. The switch lives in the audit database
(`site_switch`), so every process of every replica reads the same rows; each process keeps what it
read for `site_switch_cache_seconds`, so a change reaches every replica within that time, without a
deploy. Which mode a call gets, first match wins:

1. the `*` row set to `off` (the kill switch: every site, whatever its own row says);
2. the site's own row;
3. the `*` row (`live` or `shadow`: the default for sites without a row);
4. the `shadow_mode` setting (shadow, else live).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from cds_hooks.audit.call_record import utcnow
from cds_hooks.audit.database import READ_ONLY
from cds_hooks.audit.schema import site_switch
from cds_hooks.config import Config
from cds_hooks.hooks.hook_request import HookRequest

log = logging.getLogger("cds_hooks.go_live")

EXTENSION = "cds_hooks.go_live"
LIVE, SHADOW, OFF = "live", "shadow", "off"
MODES = (LIVE, SHADOW, OFF)
ALL_SITES = "*"
MAX_SITE_CHARS = 200


@dataclass(frozen=True)
class Decision:
    site: str | None
    mode: str


class SiteSwitch:
    """The `site_switch` table, and a per-process copy of it refreshed every `ttl` seconds."""

    def __init__(self, engine: Engine, ttl: float = 5.0, clock=time.monotonic):
        self.engine = engine
        self.ttl = ttl
        self._clock = clock
        self._modes: dict[str, str] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def modes(self) -> dict[str, str]:
        """site -> mode, at most `ttl` seconds old. When the database cannot be read, the last rows
        read are kept (a call then fails at its audit write anyway, which the caller sees as 503)."""
        if self._clock() - self._read_at < self.ttl:
            return self._modes
        with self._lock:
            if self._clock() - self._read_at < self.ttl:
                return self._modes
            try:
                with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                    rows = conn.execute(select(site_switch.c.site, site_switch.c.mode)).all()
                self._modes = {site: mode for site, mode in rows if mode in MODES}
            except Exception as exc:  # noqa: BLE001 - any database failure: keep what we had
                log.warning("site switch read failed: %s", type(exc).__name__)
            self._read_at = self._clock()
        return self._modes

    def rows(self) -> list[dict]:
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            return [dict(r) for r in conn.execute(select(site_switch).order_by(site_switch.c.site)).mappings()]

    def set(self, site: str, mode: str, actor: str, reason: str | None = None) -> None:
        check_site(site)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        values = {
            "mode": mode,
            "reason": (reason or None) and reason[:300],
            "changed_at": utcnow(),
            "changed_by": actor[:200],
        }
        with self.engine.begin() as conn:
            if conn.execute(update(site_switch).where(site_switch.c.site == site).values(**values)).rowcount == 0:
                conn.execute(insert(site_switch).values(site=site, **values))
        self._read_at = float("-inf")

    def clear(self, site: str) -> bool:
        """Remove a site's row (it follows `*` and the setting again); False when there was none."""
        with self.engine.begin() as conn:
            removed = conn.execute(delete(site_switch).where(site_switch.c.site == site)).rowcount
        self._read_at = float("-inf")
        return removed == 1


def check_site(site: str) -> None:
    if not isinstance(site, str) or not site or len(site) > MAX_SITE_CHARS or not site.isprintable():
        raise ValueError(f"a site is 1 to {MAX_SITE_CHARS} printable characters")


def decide_mode(modes: dict[str, str], site: str | None, default: str) -> str:
    """The precedence in the module docstring."""
    everywhere = modes.get(ALL_SITES)
    if everywhere == OFF:
        return OFF
    if site is not None and site in modes:
        return modes[site]
    return everywhere or default


class GoLive:
    """Decides the mode of each hook call (the service view asks after parsing the request)."""

    def __init__(self, config: Config, switch: SiteSwitch | None):
        self.site_by = config.site_by
        self.default = SHADOW if config.shadow_mode else LIVE
        self.switch = switch

    def site_of(self, request: HookRequest, caller) -> str | None:
        """The site of a call (None when the call carries nothing that names one)."""
        if self.site_by == "fhir_server":
            site = request.fhir_server.rstrip("/") if request.fhir_server else None
        elif caller is None:  # authentication off: no verified claims to go by
            site = None
        elif self.site_by == "issuer":
            site = caller.iss
        else:
            site = caller.tenant or caller.iss
        return site[:MAX_SITE_CHARS] if site else None

    def decide(self, request: HookRequest, caller=None) -> Decision:
        site = self.site_of(request, caller)
        modes = self.switch.modes() if self.switch is not None else {}
        return Decision(site, decide_mode(modes, site, self.default))
