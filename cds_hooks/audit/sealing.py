"""Application-level encryption and pseudonyms for patient data in the audit database.

Sealed content is JSON, compressed, then encrypted with AES-256-GCM under the current key; the
row keeps the key's id, so keys can rotate (old keys stay in the key ring to read old rows until
`cds-hooks audit rekey` re-encrypts them). The row's own id is the associated data, so a sealed
value cannot be moved to another row. Patient ids are replaced by a keyed hash (HMAC-SHA-256) with
a separate key that does not rotate, so one patient's rows join without decrypting anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import zlib
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cds_hooks.config import Config
from cds_hooks.errors import CdsError

log = logging.getLogger("cds_hooks.sealing")

DEV_KEY_FILE = "audit-keys.json"
_NONCE = 12
_VERSION = b"\x01"  # format byte: 1 = zlib-compressed JSON under AES-256-GCM


class SealingError(CdsError):
    """A key is missing or malformed, or sealed content does not open (wrong key, tampered)."""

    code = "sealing-key"


def _key_bytes(name: str, value: str, minimum: int, exact: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealingError(f"{name} is not valid base64") from None
    if exact is not None and len(raw) != exact:
        raise SealingError(f"{name} must be {exact} bytes (base64 of {exact} random bytes), got {len(raw)}")
    if len(raw) < minimum:
        raise SealingError(f"{name} must be at least {minimum} bytes, got {len(raw)}")
    return raw


def new_key() -> str:
    """A fresh 32-byte key, base64: for `audit_keys` or `audit_pseudonym_key`."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Sealer:
    def __init__(self, keys: dict[str, bytes], current: str, pseudonym_key: bytes):
        if current not in keys:
            raise SealingError(f"the current audit key id {current!r} is not among the audit keys")
        self.current = current
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._pseudonym_key = pseudonym_key

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._aead)

    def seal(self, content, row_id: str) -> tuple[str, bytes]:
        """(key id, sealed bytes) for any JSON-serialisable `content` of row `row_id`."""
        # A lone surrogate cannot be UTF-8: written as its JSON escape (a \\ud800-style escape) it reads back the same.
        text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        plain = zlib.compress(text.encode("utf-8", "backslashreplace"))
        nonce = os.urandom(_NONCE)
        return self.current, _VERSION + nonce + self._aead[self.current].encrypt(nonce, plain, row_id.encode())

    def open(self, key_id: str | None, sealed: bytes | None, row_id: str):
        if sealed is None:
            return None
        if key_id not in self._aead:
            raise SealingError(f"audit key {key_id!r} is not configured; it is needed to read this row")
        sealed = bytes(sealed)
        if sealed[:1] != _VERSION:
            raise SealingError("unknown sealed-content format")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            plain = self._aead[key_id].decrypt(nonce, body, row_id.encode())
        except InvalidTag:
            raise SealingError("sealed content does not open: wrong key or altered data") from None
        return json.loads(zlib.decompress(plain))

    def pseudonym(self, patient_id: str | None) -> str | None:
        if not patient_id:
            return None
        return hmac.new(self._pseudonym_key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()

    @classmethod
    def from_config(cls, config: Config) -> "Sealer":
        """Keys from the configuration; without any, a development key file in `var_dir` (with a warning)."""
        if config.audit_keys:
            keys = {
                kid: _key_bytes(f"audit key {kid!r}", v.get_secret_value(), 32, exact=32)
                for kid, v in config.audit_keys.items()
            }
            current = config.audit_key_id or (next(iter(keys)) if len(keys) == 1 else None)
            if current is None:
                raise SealingError("audit_key_id must name the current key when audit_keys holds several")
            if config.audit_pseudonym_key is None:
                raise SealingError("audit_pseudonym_key is required when audit_keys is set")
            pseudonym = _key_bytes("audit_pseudonym_key", config.audit_pseudonym_key.get_secret_value(), 32)
            return cls(keys, current, pseudonym)
        return cls._development(Path(config.var_dir), config)

    @classmethod
    def _development(cls, var_dir: Path, config: Config) -> "Sealer":
        path = var_dir / DEV_KEY_FILE
        var_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written aside, then linked into place: atomic, and a concurrent starter keeps the first.
            kid = "dev-" + datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
            tmp = var_dir / f".{DEV_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"current": kid, "keys": {kid: new_key()}, "pseudonym": new_key()}, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        data = json.loads(path.read_text())
        log.warning(
            "AUDIT ENCRYPTION KEYS COME FROM THE DEVELOPMENT KEY FILE %s: configure audit_keys, "
            "audit_key_id and audit_pseudonym_key from a secret store in production.",
            path,
        )
        keys = {kid: _key_bytes(f"audit key {kid!r}", v, 32, exact=32) for kid, v in data["keys"].items()}
        pseudonym = config.audit_pseudonym_key.get_secret_value() if config.audit_pseudonym_key else data["pseudonym"]
        return cls(keys, data["current"], _key_bytes("audit_pseudonym_key", pseudonym, 32))
