"""The services an application serves: one Evaluator per rule pack, and the engine they share."""

from __future__ import annotations

from cds_hooks.auth.replay import MemoryReplayStore, ReplayStore
from cds_hooks.config import Config
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.packs.loader import RulePack
from cds_hooks.pipeline.evaluation import Evaluator

EXTENSION = "cds_hooks"  # the key of the registry in a Flask app's extensions (web/extensions.py)


class ServiceRegistry:
    def __init__(
        self, packs: dict[str, RulePack], engine: CqlEngine, config: Config, replay_store: ReplayStore | None = None
    ):
        self.config = config
        self.engine = engine
        self.replay_store = replay_store or MemoryReplayStore()
        self.evaluators = {sid: Evaluator(pack, engine, config) for sid, pack in packs.items()}

    def packs(self) -> list[RulePack]:
        return [e.pack for e in self.evaluators.values()]

    def get(self, service_id: str) -> Evaluator | None:
        return self.evaluators.get(service_id)

    def claiming(self, hook: str, draft_orders: list[dict]) -> list[Evaluator]:
        """The services answering `hook` whose pack claims at least one of the draft orders, in the
        order the packs are served: the services an EHR's call for these orders would get cards from."""
        return [e for e in self.evaluators.values() if e.pack.hook == hook and e.claims(draft_orders)]


def engine_payload(packs: dict[str, RulePack]) -> tuple[list[dict], list[dict]]:
    """Every library and value set of every pack, once each."""
    libraries: dict[tuple, dict] = {}
    valuesets: dict[str, dict] = {}
    for pack in packs.values():
        for elm in pack.elm:
            ident = elm["library"]["identifier"]
            libraries[(ident["id"], ident.get("version"))] = elm
        for vs in pack.valuesets:
            valuesets[vs["url"]] = vs
    return list(libraries.values()), list(valuesets.values())
