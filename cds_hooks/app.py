"""The application factory."""
from __future__ import annotations

import logging

from flask import Flask

from . import cors, discovery, feedback, go_live, logs, openapi, operations, policies, request_limits, security, service, tryit
from .audit_setup import audit_parts
from .config import Config
from .engine import CqlEngine
from .errors import register_error_handlers
from .recording import EXTENSION as RECORDER
from .registry import EXTENSION, ServiceRegistry, engine_payload
from .rulepack import load_rule_packs

log = logging.getLogger("cds_hooks")


def create_app(config: Config | None = None, engine: CqlEngine | None = None) -> Flask:
    """Build the service: load the rule packs, start the CQL engine, register the routes.

    An `engine` may be passed in to share one between applications (tests, benchmarks).
    """
    config = config or Config.from_env()
    security.check_settings(config)  # before any worker process is started
    app = Flask(__name__)
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    packs = load_rule_packs(config.cql_root, config.rule_packs or None)
    if engine is None:
        engine = CqlEngine(node_executable=config.node_executable, workers=config.engine_workers,
                           timeout=config.engine_timeout, max_heap_mb=config.engine_heap_mb,
                           cache_dir=config.engine_cache_dir)
    libraries, valuesets = engine_payload(packs)
    engine.load(libraries, valuesets)
    recorder, replay_store = audit_parts(config)
    app.extensions[EXTENSION] = ServiceRegistry(packs, engine, config, replay_store=replay_store)
    app.extensions[RECORDER] = recorder
    go_live.init_app(app, config, recorder.store.engine if recorder.store is not None else None)

    if config.auth_disabled:
        log.warning("CALLER AUTHENTICATION IS OFF: any caller can use this service. "
                    "Use this only for local development.")
    register_error_handlers(app)
    # Order matters: request id first, then CORS preflights (no credentials), then the caller's JWT,
    # then the body. Each applies to every route under /cds-services, present or added later.
    logs.init_app(app, config)
    cors.init_app(app, config)
    security.init_app(app, config, app.extensions[EXTENSION].replay_store)
    request_limits.init_app(app, config)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(service.bp)
    app.register_blueprint(policies.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(openapi.bp)
    if config.tryit_enabled:
        app.register_blueprint(tryit.bp)
    return app
