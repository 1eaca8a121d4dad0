"""The application factory."""
from __future__ import annotations

import logging

from flask import Flask

from . import discovery, policies, service
from .config import Config
from .engine import CqlEngine
from .errors import register_error_handlers
from .registry import EXTENSION, ServiceRegistry, engine_payload
from .rulepack import load_rule_packs

log = logging.getLogger("cds_hooks")


def create_app(config: Config | None = None, engine: CqlEngine | None = None) -> Flask:
    """Build the service: load the rule packs, start the CQL engine, register the routes.

    An `engine` may be passed in to share one between applications (tests, benchmarks).
    """
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    packs = load_rule_packs(config.cql_root, config.rule_packs or None)
    if engine is None:
        engine = CqlEngine(node_executable=config.node_executable, workers=config.engine_workers,
                           timeout=config.engine_timeout, max_heap_mb=config.engine_heap_mb,
                           cache_dir=config.engine_cache_dir)
    libraries, valuesets = engine_payload(packs)
    engine.load(libraries, valuesets)
    app.extensions[EXTENSION] = ServiceRegistry(packs, engine, config)

    if config.auth_disabled:
        log.warning("CALLER AUTHENTICATION IS OFF: any caller can use this service. "
                    "Use this only for local development.")
    register_error_handlers(app)
    app.register_blueprint(discovery.bp)
    app.register_blueprint(service.bp)
    app.register_blueprint(policies.bp)
    return app
