"""Read deploy/Dockerfile as Docker would: instructions (continuation lines joined), stages, and the
final stage's ENV, USER, WORKDIR, ENTRYPOINT and HEALTHCHECK, so tests can check the image's
invariants and start the service with the same command and environment shape."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV key=value pairs in order, with $VAR / ${VAR} references to earlier ones expanded
        (a reference to a variable not set here is kept as written)."""
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                out[key] = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: out.get(m.group(1), m.group(0)), value)
        return out

    def exec_form(self, keyword: str) -> list[str] | None:
        ins = self.last(keyword)
        if ins is None:
            return None
        args = ins.args
        if keyword == "HEALTHCHECK":
            args = args.split("CMD", 1)[1].strip()
        value = json.loads(args)
        assert isinstance(value, list), f"{keyword} is not in exec form"
        return value


def instructions(text: str) -> list[Instruction]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions(path.read_text(encoding="utf-8")):
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append(Stage(parts[0], name))
        elif result:
            result[-1].instructions.append(ins)
    return result
