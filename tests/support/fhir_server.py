"""Start and stop the real FHIR R4 server (sekmet-fhir, in .venv-fhir) used by the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
SEKMET = REPO / ".venv-fhir" / "bin" / "sekmet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FhirServer:
    """A sekmet FHIR server process on 127.0.0.1 with its own SQLite store in `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None, tokens: list[str] | None = None):
        if not SEKMET.exists():
            raise RuntimeError(f"{SEKMET} is missing: run ./scripts/setup --test (or ./scripts/test)")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.tokens = tokens or []
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "FhirServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        auth = {"types": ["bearer"], "tokens": self.tokens} if self.tokens else {"types": ["none"]}
        settings = {
            "base_url": self.base_url,
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.workdir / "data"),
            "simulator": {"enabled": False},
            "log_inbound": False,
            "validation": {"inbound": "warn"},
            "server_auth": auth,
        }
        cfg = self.workdir / "settings.yaml"
        cfg.write_text(json.dumps(settings))  # JSON is valid YAML
        log = open(self.workdir / "server.log", "wb")
        self._proc = subprocess.Popen(
            [str(SEKMET), "serve", "-c", str(cfg)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SEKMET_CONFIG": str(cfg)},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"FHIR server exited; see {self.workdir / 'server.log'}")
            try:
                r = requests.get(f"{self.base_url}/metadata", timeout=1, headers=self.headers())
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("FHIR server did not start in time")

    def headers(self) -> dict:
        h = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.tokens:
            h["Authorization"] = f"Bearer {self.tokens[0]}"
        return h

    def load_bundle(self, bundle: dict) -> dict:
        r = requests.post(self.base_url, data=json.dumps(bundle), headers=self.headers(), timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
