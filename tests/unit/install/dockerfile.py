"""Just enough of the Dockerfile and .dockerignore formats to test our images without a
Docker engine: instructions with line continuations, stages, exec-form arguments, ARG
defaults in FROM, and Docker's ignore rules (last match wins; a match on a parent folder
counts)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str          # upper case: FROM, RUN, COPY, ...
    value: str            # the rest of the instruction, continuations joined

    def flags(self) -> dict[str, str]:
        """Leading `--name=value` flags (COPY --from=..., HEALTHCHECK --interval=...)."""
        out: dict[str, str] = {}
        for word in shlex.split(self.value):
            if not word.startswith("--"):
                break
            name, _, val = word[2:].partition("=")
            out[name] = val
        return out

    def _rest(self) -> str:
        rest = self.value
        while rest.startswith("--"):
            rest = rest.split(None, 1)[1] if " " in rest else ""
        return rest.strip()

    def words(self) -> list[str]:
        """The arguments after the flags: exec form (JSON) or shell words."""
        return _words(self._rest())

    @property
    def exec_form(self) -> bool:
        return self._rest().startswith("[")

    def healthcheck_command(self) -> tuple[bool, list[str]]:
        """HEALTHCHECK [flags] CMD ...: (exec form?, the command)."""
        assert self.keyword == "HEALTHCHECK"
        keyword, _, command = self._rest().partition(" ")
        assert keyword.upper() == "CMD", "HEALTHCHECK NONE or malformed"
        return command.strip().startswith("["), _words(command.strip())


def _words(rest: str) -> list[str]:
    if rest.startswith("["):
        parsed = json.loads(rest)
        assert isinstance(parsed, list)
        return [str(w) for w in parsed]
    return shlex.split(rest)


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
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for word in shlex.split(ins.value):
                key, _, val = word.partition("=")
                out[key] = val
        return out


@dataclass
class Dockerfile:
    args: dict[str, str]          # global ARGs (before the first FROM) and their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are dropped, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, value = line.partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(value.split())))
    assert not pending, "the file ends inside a line continuation"
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def parse(path: Path) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "ARG" and not stages:
            arg, _, default = ins.value.partition("=")
            args[arg] = default
        elif ins.keyword == "FROM":
            words = ins.words()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(_substitute(words[0], args), name))
        else:
            assert stages, f"{ins.keyword} before the first FROM"
            stages[-1].instructions.append(ins)
    return Dockerfile(args, stages)


# ---------------------------------------------------------------------------------------------
# .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


@dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]   # (exclude?, pattern), in file order

    @classmethod
    def load(cls, path: Path) -> IgnoreRules:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            rules.append((exclude, _pattern_regex(pattern)))
        return cls(tuple(rules))

    def excluded(self, relpath: str) -> bool:
        """Docker's rule: the last pattern matching the path or one of its parents wins."""
        parts = relpath.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for exclude, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                result = exclude
        return result
