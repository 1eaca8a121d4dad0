"""Each engine worker runs with a bounded V8 heap (CDS_ENGINE_HEAP_MB), so its memory stays bounded."""

from __future__ import annotations

from pathlib import Path

from cds_hooks.web.app import create_app
from cds_hooks.config import Config
from cds_hooks.web.extensions import registry_of


def worker_command_lines(config: Config) -> list[str]:
    registry = registry_of(create_app(config))
    try:
        registry.engine.start()
        return [
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for pid in registry.engine.worker_pids()
        ]
    finally:
        registry.engine.close()


def test_workers_get_the_configured_heap_limit():
    lines = worker_command_lines(Config.development(cql_engine="reference", engine_workers=1, engine_heap_mb=160))
    assert len(lines) == 1 and "--max-old-space-size=160" in lines[0]


def test_the_default_limit_is_192_mb():
    assert Config.development().engine_heap_mb == 192


def test_an_empty_limit_leaves_v8_its_own():
    lines = worker_command_lines(Config.development(cql_engine="reference", engine_workers=1, engine_heap_mb=None))
    assert "--max-old-space-size" not in lines[0]
