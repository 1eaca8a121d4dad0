"""The parsed FHIR model info is kept on disk after a worker's first start and read back by the next."""

from __future__ import annotations

import pytest

from benchmarks.engine_ab import engine_calls
from cds_hooks.engine.bridge import CqlEngine
from cds_hooks.pipeline.registry import engine_payload

PACK, CALLS = engine_calls()
SEED = dict(CALLS)["seed"]


def seed_results(cache_dir, monkeypatch) -> dict:
    monkeypatch.delenv("CDS_ENGINE_CACHE_DIR", raising=False)
    libraries, valuesets = engine_payload({PACK.service_id: PACK})
    with CqlEngine(workers=1, timeout=60.0, cache_dir=str(cache_dir)) as engine:
        engine.load(libraries, valuesets)
        lib = PACK.library
        return engine.evaluate(
            lib["id"], lib.get("version"), SEED["resources"], SEED["patient_id"], SEED["parameters"], ["Criteria"]
        )


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        return seed_results("off", mp)
    finally:
        mp.undo()


def test_the_first_start_writes_the_cache(tmp_path, monkeypatch, uncached):
    assert seed_results(tmp_path, monkeypatch) == uncached
    assert len(list(tmp_path.glob("modelinfo-*.json"))) == 1


def test_a_later_start_reads_it_and_gives_the_same_results(tmp_path, monkeypatch, uncached):
    seed_results(tmp_path, monkeypatch)
    cache = next(tmp_path.glob("modelinfo-*.json"))
    written = cache.stat().st_mtime_ns
    assert seed_results(tmp_path, monkeypatch) == uncached
    assert cache.stat().st_mtime_ns == written


def test_a_damaged_cache_file_falls_back_to_parsing(tmp_path, monkeypatch, uncached):
    seed_results(tmp_path, monkeypatch)
    next(tmp_path.glob("modelinfo-*.json")).write_text("{not json")
    assert seed_results(tmp_path, monkeypatch) == uncached


def test_the_setting_reaches_the_engine(tmp_path):
    from cds_hooks.web.app import create_app
    from cds_hooks.config import Config
    from cds_hooks.web.extensions import registry_of

    registry = registry_of(
        create_app(Config.development(cql_engine="reference", engine_workers=1, engine_cache_dir=str(tmp_path)))
    )
    try:
        registry.engine.start()
    finally:
        registry.engine.close()
    assert len(list(tmp_path.glob("modelinfo-*.json"))) == 1


def test_an_unwritable_cache_folder_only_costs_the_parse(tmp_path, monkeypatch, uncached):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    assert seed_results(blocker / "cache", monkeypatch) == uncached
