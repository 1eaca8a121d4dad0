"""Application-level encryption of audit content and patient pseudonyms (audit/sealing.py)."""

import base64
import json
import os
import stat

import pytest

from cds_hooks.config import Config
from cds_hooks.audit.sealing import DEV_KEY_FILE, Sealer, SealingError, new_key

CONTENT = {"patientId": "seed-patient", "response": {"cards": [{"summary": "x" * 500}]}}


def sealer(current="k1", **keys):
    keys = keys or {"k1": new_key()}
    return Sealer({k: base64.b64decode(v) for k, v in keys.items()}, current, base64.b64decode(new_key()))


def test_sealed_content_opens_to_the_same_json():
    s = sealer()
    key_id, sealed = s.seal(CONTENT, "row-1")
    assert key_id == "k1" and s.open(key_id, sealed, "row-1") == CONTENT


def test_sealed_content_holds_nothing_readable():
    _, sealed = sealer().seal(CONTENT, "row-1")
    assert b"seed-patient" not in sealed and b"summary" not in sealed


def test_the_same_content_seals_differently_each_time():
    s = sealer()
    assert s.seal(CONTENT, "row-1")[1] != s.seal(CONTENT, "row-1")[1]


def test_sealed_content_moved_to_another_row_does_not_open():
    s = sealer()
    key_id, sealed = s.seal(CONTENT, "row-1")
    with pytest.raises(SealingError, match="wrong key or altered"):
        s.open(key_id, sealed, "row-2")


def test_altered_sealed_content_does_not_open():
    s = sealer()
    key_id, sealed = s.seal(CONTENT, "row-1")
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealingError):
        s.open(key_id, altered, "row-1")


def test_rows_sealed_under_an_old_key_open_while_it_stays_in_the_key_ring():
    k1, k2 = new_key(), new_key()
    old = sealer("k1", k1=k1)
    key_id, sealed = old.seal(CONTENT, "row-1")
    rotated = sealer("k2", k1=k1, k2=k2)
    assert rotated.open(key_id, sealed, "row-1") == CONTENT
    assert rotated.seal(CONTENT, "row-2")[0] == "k2"


def test_a_row_sealed_under_a_key_no_longer_configured_names_the_missing_key():
    key_id, sealed = sealer("k1").seal(CONTENT, "row-1")
    with pytest.raises(SealingError, match="'k1' is not configured"):
        sealer("k2", k2=new_key()).open(key_id, sealed, "row-1")


def test_the_pseudonym_is_stable_keyed_and_not_the_id():
    key = base64.b64decode(new_key())
    a = Sealer({"k": base64.b64decode(new_key())}, "k", key)
    b = Sealer({"k": base64.b64decode(new_key())}, "k", key)
    other = Sealer({"k": base64.b64decode(new_key())}, "k", base64.b64decode(new_key()))
    assert a.pseudonym("seed-patient") == b.pseudonym("seed-patient")  # the encryption key does not matter
    assert a.pseudonym("seed-patient") != other.pseudonym("seed-patient")
    assert a.pseudonym("seed-patient") != a.pseudonym("other-patient")
    assert "seed-patient" not in a.pseudonym("seed-patient")


def test_configured_keys_are_used(tmp_path):
    config = Config(var_dir=tmp_path, audit_keys={"prod-2026": new_key()}, audit_pseudonym_key=new_key())
    assert Sealer.from_config(config).current == "prod-2026"
    assert not (tmp_path / DEV_KEY_FILE).exists()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"audit_keys": {"k": "not base64!"}}, "not valid base64"),
        ({"audit_keys": {"k": base64.b64encode(b"short").decode()}}, "must be 32 bytes"),
        ({"audit_keys": {"a": new_key(), "b": new_key()}}, "audit_key_id must name the current key"),
        ({"audit_keys": {"a": new_key()}, "audit_key_id": "b"}, "'b' is not among the audit keys"),
    ],
    ids=["bad-base64", "short-key", "several-keys-no-current", "unknown-current"],
)
def test_bad_key_settings_are_refused_with_a_reason(tmp_path, settings, message):
    config = Config(var_dir=tmp_path, audit_pseudonym_key=new_key(), **settings)
    with pytest.raises(SealingError, match=message):
        Sealer.from_config(config)


def test_keys_without_a_pseudonym_key_are_refused(tmp_path):
    with pytest.raises(SealingError, match="audit_pseudonym_key is required"):
        Sealer.from_config(Config(var_dir=tmp_path, audit_keys={"k": new_key()}))


def test_without_keys_a_private_development_key_file_is_made_once_and_reused(tmp_path, caplog):
    first = Sealer.from_config(Config(var_dir=tmp_path))
    path = tmp_path / DEV_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "DEVELOPMENT KEY FILE" in caplog.text
    key_id, sealed = first.seal(CONTENT, "row-1")
    again = Sealer.from_config(Config(var_dir=tmp_path))
    assert again.open(key_id, sealed, "row-1") == CONTENT
    assert json.loads(path.read_text())["current"] == key_id
