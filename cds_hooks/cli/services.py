"""Which service of a multi-pack server answers a request file, for `evaluate` and `brief`.

An EHR calls every service it has registered for the hook (CDS Hooks 2.0, "Calling a CDS Service");
each service checks the draft orders its own pack claims and answers the rest with no cards. The
offline commands choose the same way: the service named with `--service`, else every service whose
pack claims one of the request's draft orders (pipeline/orders.py matching, `ServiceRegistry.claiming`).
"""

from __future__ import annotations

from cds_hooks.errors import CdsError
from cds_hooks.hooks.hook_request import parse_hook_request
from cds_hooks.pipeline.evaluation import Evaluator
from cds_hooks.pipeline.registry import ServiceRegistry


class NoClaimingService(Exception):
    """No service of this server checks any of the request's draft orders (the message is one line)."""


def claiming_services(registry: ServiceRegistry, body) -> list[Evaluator]:
    """The services to ask about `body`, in the order the packs are served.

    A body no service can read goes to one service answering its hook (or any service), so that the
    caller sees the service's own answer to it (400 and why) rather than a guess from this command.
    """
    hook = body.get("hook") if isinstance(body, dict) else None
    evaluators = list(registry.evaluators.values())
    answering = [e for e in evaluators if e.pack.hook == hook] or evaluators
    try:
        request = parse_hook_request(body, answering[0].pack.hook)
    except CdsError:
        return answering[:1]
    claiming = registry.claiming(request.hook, request.draft_orders)
    if not claiming:
        served = ", ".join(e.pack.service_id for e in answering)
        raise NoClaimingService(
            f"no service claims these orders: none of the {len(request.draft_orders)} draft order(s) is one "
            f"that {served} checks"
        )
    return claiming
