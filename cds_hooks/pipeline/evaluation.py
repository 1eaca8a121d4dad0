"""The order-sign pipeline for one rule pack: orders -> data -> CQL results -> cards -> response.

Each stage lives in its own module; this one calls them in order and records what happened
(the outcome feeds the HTTP response, the CLI, and later the audit trail and metrics).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cds_hooks.config import Config
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.engine.retrieves import retrieve_filter
from cds_hooks.errors import InvalidRequest, PrefetchIncomplete
from cds_hooks.hooks.hook_request import HookRequest
from cds_hooks.packs.loader import RulePack, RulePackError
from cds_hooks.hooks.crd_config import read_configuration
from cds_hooks.packs.dtr import load_dtr
from cds_hooks.pipeline.cards import CardContext, build_card, unreadable_record_card
from cds_hooks.pipeline.case_record import case_record
from cds_hooks.pipeline.coverage_info import CoverageLedger, system_actions, verdict
from cds_hooks.pipeline.criteria import CriterionResult, PathwayResult, evaluate_case_with_pathway
from cds_hooks.pipeline.note_sources import fetch_note_attachments
from cds_hooks.pipeline.orders import OrderDetector, SurgicalCase, group_cases
from cds_hooks.pipeline.patient_data import FetchSettings, PatientData, gather
from cds_hooks.pipeline.profiles import ProfileChoice, select_profile
from cds_hooks.spine.derived_findings import derive as derive_findings
from cds_hooks.spine.levels import Region, region
from cds_hooks.spine.note_findings import derive as derive_note_findings
from cds_hooks.spine.note_findings import attachment_urls, readable_notes

EVALUATION_EXTENSION_KEY = "org.example.fusion-cds.evaluation"


@dataclass
class CaseOutcome:
    case: SurgicalCase
    choice: ProfileChoice
    results: list[CriterionResult]
    card: dict
    pathway: PathwayResult | None = None
    record: dict = field(default_factory=dict)  # the whole evaluation, for the case view (case_record.py)


@dataclass
class Outcome:
    response: dict
    cases: list[CaseOutcome] = field(default_factory=list)
    data: PatientData | None = None
    timings: dict[str, float] = field(default_factory=dict)


def spine_region(pack: RulePack) -> Region | None:
    """The pack's spinal region (pack.json `spine.region`), checked against the spine extension's data.

    The schema requires the section of a pack that uses the spine extension; the name is checked here,
    where packs and the extension meet, and an unknown one refuses the start like any pack problem.
    """
    if not pack.uses("spine") or pack.model.spine is None:
        return None
    try:
        return region(pack.model.spine.region)
    except ValueError as exc:
        raise RulePackError(f"rule pack {pack.folder / 'pack.json'} is invalid: $.spine.region: {exc}") from exc


class Evaluator:
    """Answers order-sign calls for one rule pack."""

    def __init__(self, pack: RulePack, engine: CqlEngine, config: Config):
        self.pack = pack
        self.engine = engine
        self.config = config
        self.region = spine_region(pack)
        self.detector = OrderDetector(pack.orders, config.local_order_codes, pack.procedure_name, self.region)
        self.codes = {**pack.codes, **config.order_codes}
        self.retrieves = retrieve_filter(pack.elm, pack.valuesets)
        self.fetch_settings = FetchSettings.from_config(config)
        # Da Vinci CRD/DTR (pipeline/coverage_info.py, packs/dtr.py): the pack's documentation
        # questionnaire, and the coverage information already sent per hookInstance and order.
        self.dtr = load_dtr(pack)
        self.coverage_ledger = CoverageLedger()

    def claims(self, draft_orders: list[dict]) -> bool:
        """Whether this service has a case to check among the draft orders (CDS Hooks 2.0 order-sign
        `draftOrders`): the order matching `evaluate` starts with, so a caller holding several services
        knows which of them the orders are for; another pack's orders give none."""
        return bool(group_cases(self.detector.detect(draft_orders)))

    def policy_url(self, base_url: str | None, profile_name: str, explicit: str | None) -> str | None:
        if explicit:
            return explicit
        if not base_url:
            return None
        return f"{base_url.rstrip('/')}/policies/{self.pack.service_id}/{profile_name}"

    def evaluate(self, request: HookRequest, base_url: str | None = None) -> Outcome:
        timings: dict[str, float] = {}
        started = time.monotonic()  # the FHIR deadline counts from the start of the call
        t0 = time.perf_counter()
        orders = self.detector.detect(request.draft_orders)
        check_orders_limit(len(orders), self.config)
        cases = group_cases(orders)
        check_cases_limit(len(cases), self.config)
        timings["orders"] = time.perf_counter() - t0
        if not cases:
            # Fast path: nothing to check, nothing fetched (CDS Hooks 2.0: an empty cards array).
            return Outcome({"cards": []}, timings=timings)

        t1 = time.perf_counter()
        data = gather(
            request,
            self.prefetch,
            self.fetch_settings,
            started=started,
            optional=self.dtr.prefetch.keys() if self.dtr else (),
        )
        timings["data"] = time.perf_counter() - t1
        unknown = data.patient_unknown
        if unknown:
            # No such patient: no criterion is checked, one card says the record could not be read.
            return Outcome({"cards": [unreadable_record_card(self.pack, unknown)]}, data=data, timings=timings)
        if data.nothing_obtained:
            reasons = "; ".join(f"{s.key}: {s.reason}" for s in data.failed_sources[:3])
            raise PrefetchIncomplete(
                data, f"No patient data could be obtained from prefetch or the FHIR server ({reasons})."
            )

        if self.config.report_text and self.pack.uses("spine"):  # report text reads spinal levels
            t_text = time.perf_counter()
            data.add_derived(derive_findings(data.resources, self.region))
            timings["report_text"] = time.perf_counter() - t_text

        if self.config.note_text and self.pack.uses("spine"):  # the note reader names spinal regions
            t_notes = time.perf_counter()
            # The look-back reaches back from the planned date of the orders, as the criteria's windows do.
            anchor = max((c.reference_date for c in cases if c.reference_date), default=None)
            notes = readable_notes(data.resources, anchor)
            fetched = fetch_note_attachments(request, notes, self.fetch_settings, started) if notes else {}
            unread = sum(1 for doc_id, index, _ in attachment_urls(notes) if (doc_id, index) not in fetched)
            if unread:
                data.mark_unread(
                    "noteAttachments",
                    "DocumentReference",
                    f"{unread} note attachment{'s' if unread > 1 else ''} given by URL could not be fetched",
                )
            data.add_derived(derive_note_findings(data.resources, fetched, anchor) if notes else [])
            timings["note_text"] = time.perf_counter() - t_notes

        coverages = data.of_type("Coverage")
        index = data.index()
        outcomes: list[CaseOutcome] = []
        engine_time = cards_time = 0.0
        t2 = time.perf_counter()
        # Only what the library's retrieves can return, encoded once for every case of the call.
        engine_input = self.engine.encode_resources(self.retrieves.select(data.resources))
        engine_time += time.perf_counter() - t2
        signed = datetime.now(timezone.utc).date().isoformat()  # a restarted plan starts on the signing day
        for case in cases:
            choice = select_profile(self.pack, coverages, case, self.config.payer_profiles)
            t2 = time.perf_counter()
            evaluated = evaluate_case_with_pathway(
                self.engine, self.pack, case, choice.profile, data, engine_input, signing_date=signed
            )
            results = evaluated.results
            t3 = time.perf_counter()
            ctx = CardContext(
                pack=self.pack,
                case=case,
                choice=choice,
                patient_id=request.patient_id,
                user_id=request.user_id,
                resources=index,
                failed_sources=data.failed_types,
                failed_reasons=data.failed_reasons,
                policy_url=self.policy_url(base_url, choice.profile.name, choice.profile.policy_url),
                codes=self.codes,
                pathway=evaluated.pathway,
                gap_dates=evaluated.gap_dates,
            )
            card = build_card(ctx, results)
            record = case_record(ctx, results)
            cards_time += time.perf_counter() - t3
            engine_time += t3 - t2
            outcomes.append(CaseOutcome(case, choice, results, card, pathway=evaluated.pathway, record=record))
        timings["engine"] = engine_time
        timings["cards"] = cards_time
        response = {
            "cards": [o.card for o in outcomes],
            "extension": {
                EVALUATION_EXTENSION_KEY: {
                    "service": self.pack.service_id,
                    "profiles": [
                        {
                            "name": o.choice.profile.name,
                            "label": o.choice.profile.label,
                            "version": o.choice.profile.version,
                            "card": o.card["uuid"],
                        }
                        for o in outcomes
                    ],
                    "dataSource": data.origin,
                    "unavailableSources": data.failed_types,
                }
            },
        }
        self._crd_step(request, response, outcomes, coverages)
        check_response_size(response, self.config)
        return Outcome(response, outcomes, data, timings)

    @property
    def prefetch(self) -> dict[str, str]:
        """Every prefetch template of the service: the pack's, and the DTR questionnaire responses."""
        return {**self.pack.prefetch, **(self.dtr.prefetch if self.dtr else {})}

    def _crd_step(
        self, request: HookRequest, response: dict, outcomes: list[CaseOutcome], coverages: list[dict]
    ) -> None:
        """Da Vinci CRD 2.2.1 on top of the cards: the client's configuration (which cards, how many,
        whether coverage information is sent) and the coverage information on every fusion order."""
        crd = read_configuration(request.raw)
        response["cards"] = crd.limit_cards(response["cards"])
        if crd.set_aside:
            response["extension"][EVALUATION_EXTENSION_KEY]["configurationSetAside"] = list(crd.set_aside)
        if not crd.coverage_info:
            return
        verdicts = [(o.case, verdict(o.results, o.choice.profile.required)) for o in outcomes]
        actions = system_actions(
            verdicts,
            coverages,
            request.hook_instance,
            self.dtr.questionnaire_canonical if self.dtr else None,
            self.coverage_ledger,
            datetime.now(timezone.utc).date(),
        )
        if actions:
            response["systemActions"] = actions


# ------------------------------------------------------------------ work limits of one call
# One signed call could otherwise ask for hundreds of cases (minutes of engine time, megabytes of
# cards). Over a limit the call is refused with 400 too-much-work: the orders are counted before
# anything is fetched or evaluated, so the refusal comes at once.


def _too_much(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="too-much-work")


def check_orders_limit(orders: int, config: Config) -> None:
    if orders > config.max_orders_per_call:
        raise _too_much(
            f"context.draftOrders holds {orders} orders this service checks; one call may hold at most "
            f"{config.max_orders_per_call}"
        )


def check_cases_limit(cases: int, config: Config) -> None:
    if cases > config.max_cases_per_call:
        raise _too_much(
            f"context.draftOrders describes {cases} surgical cases; one call may ask for at most "
            f"{config.max_cases_per_call}"
        )


def check_response_size(response: dict, config: Config) -> None:
    size = len(json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > config.max_response_bytes:
        raise _too_much(
            f"the cards for this call would take {size} bytes; the most one answer may take is "
            f"{config.max_response_bytes}"
        )
