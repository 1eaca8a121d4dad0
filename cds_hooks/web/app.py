"""The application factory."""

from __future__ import annotations

import logging

from flask import Flask

from cds_hooks.audit.go_live import EXTENSION as GO_LIVE, GoLive, SiteSwitch
from cds_hooks.auth.caller_jwt import check_settings
from cds_hooks.config import Config
from cds_hooks.engine.bridge import CqlEngine, _find_node_modules
from cds_hooks.engine.compiled.adapter import CompiledEngine, engine_from_config
from cds_hooks.ops import logs
from cds_hooks.packs.loader import add_local_codes, load_rule_packs
from cds_hooks.pipeline.registry import EXTENSION, ServiceRegistry, engine_payload
from cds_hooks.web import (
    authentication,
    case_view,
    cors,
    discovery,
    dtr,
    feedback,
    fhir_types,
    openapi,
    operations,
    policies,
    request_limits,
    service,
)
from cds_hooks.web.http_errors import register_error_handlers
from cds_hooks.web.recording import EXTENSION as RECORDER, audit_parts

log = logging.getLogger("cds_hooks")


def create_app(
    config: Config | None = None, engine: CqlEngine | CompiledEngine | None = None, serving: bool = True
) -> Flask:
    """Build the service: load the rule packs, build the CQL engine `config.cql_engine` names (the
    compiled engine compiles every library here, so unsupported ELM stops the start), register the routes.

    An `engine` may be passed in to share one between applications (tests, benchmarks). `serving`
    is False for offline tools that answer no caller (`cds-hooks evaluate`): they skip the warning
    that caller authentication is off.
    """
    config = config or Config.from_env()
    check_settings(config)  # before any worker process is started
    app = Flask(__name__)
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    packs = load_rule_packs(config.cql_root, config.rule_packs or None)
    if config.local_valueset_codes:
        for pack in packs.values():
            add_local_codes(pack, config.local_valueset_codes)
    if engine is None:
        engine = engine_from_config(config)
    libraries, valuesets = engine_payload(packs)
    engine.load(libraries, valuesets)
    recorder, replay_store = audit_parts(config)
    app.extensions[EXTENSION] = ServiceRegistry(packs, engine, config, replay_store=replay_store)
    app.extensions[RECORDER] = recorder
    # Without an audit database there is no site switch: only `shadow_mode` applies.
    switch = SiteSwitch(recorder.store.engine, config.site_switch_cache_seconds) if recorder.store is not None else None
    app.extensions[GO_LIVE] = GoLive(config, switch)
    # The element types the engine's FHIR model gives every resource it reads (checked at the edge).
    app.extensions[fhir_types.EXTENSION] = fhir_types.load(_find_node_modules(None))

    if config.auth_disabled and serving:
        log.warning(
            "CALLER AUTHENTICATION IS OFF: any caller can use this service. Use this only for local development."
        )
    register_error_handlers(app)
    # Order matters: request id first, then CORS preflights (no credentials), then the caller's JWT,
    # then the body. Each applies to every route under /cds-services, present or added later.
    logs.init_app(app, config)
    cors.init_app(app, config)
    authentication.init_app(app, config, app.extensions[EXTENSION].replay_store)
    request_limits.init_app(app, config)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(service.bp)
    app.register_blueprint(policies.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(dtr.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(openapi.bp)
    case_view.init_app(app, config)
    if config.tryit_enabled:
        # The EHR side (cds_hooks.sandbox) is imported only here: a service without the try-it page
        # never loads the client, its JWT signer, the fixtures or the draft-order builder.
        from cds_hooks.sandbox import tryit

        app.register_blueprint(tryit.bp)
    return app
