"""Waiting for a server process the test started: it answers, or it has failed."""

from __future__ import annotations

import subprocess
import time

import requests


def wait_until_answering(
    proc: subprocess.Popen, url: str, timeout: float, interval: float = 0.2, request_timeout: float = 1.0
) -> bool:
    """True once `url` answers 200; False when the process exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=request_timeout).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(interval)
