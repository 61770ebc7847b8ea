"""Run a README section's code blocks as written, in a folder of the test's choosing, so the README cannot drift.

A ```toml block whose first line is a comment naming a path (`# experiments/my-exp.toml: ...`) is written there.
A ```bash block runs line by line (backslash continuations joined, comments dropped): `cd DIR` changes folder,
`VAR=value` before a command sets the environment, and `python -m wiseft_explorer ARGS` runs the CLI's `main` in
this process (so a test may stand tiny models in for real ones); `... app` calls `on_app` instead of starting a
server. Any other command fails the walk: nothing in a block is skipped unseen.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
CLI = ["python", "-m", "wiseft_explorer"]


@dataclass
class Block:
    """One fenced code block: its language and text."""

    lang: str
    text: str

    @property
    def target(self) -> str | None:
        """The path a toml block's first comment names (`# experiments/x.toml: ...`), or None."""
        match = re.match(r"#\s*(\S+\.toml)\b", self.text)
        return match.group(1) if match else None


@dataclass
class Ran:
    """One command that ran: its words, the folder it ran in, exit status and everything it printed."""

    argv: list[str]
    cwd: Path
    code: int
    output: str


@dataclass
class Walk:
    """Runs blocks in order from `root`; `on_app(env, cwd)` stands in for `wiseft_explorer app`."""

    root: Path
    on_app: Callable[[dict[str, str], Path], None]
    cwd: Path = field(init=False)
    ran: list[Ran] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cwd = self.root

    def run(self, blocks: list[Block]) -> list[Ran]:
        for block in blocks:
            if block.lang == "toml":
                self._write(block)
            elif block.lang == "bash":
                for line in shell_lines(block.text):
                    self._command(line)
            else:
                raise AssertionError(f"no way to run a ```{block.lang} block")
        return self.ran

    def _write(self, block: Block) -> None:
        if block.target is None:
            raise AssertionError(f"a toml block must start with a comment naming its file:\n{block.text[:200]}")
        path = self.cwd / block.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text, encoding="utf-8")

    def _command(self, words: list[str]) -> None:
        env = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        if words[:1] == ["cd"] and len(words) == 2 and not env:
            self.cwd = (self.cwd / words[1]).resolve()
            assert self.cwd.is_dir(), f"cd {words[1]}: no such folder"
            return
        if words[:3] != CLI:
            raise AssertionError(f"the walk cannot run {shlex.join(words)!r}")
        if words[3:4] == ["app"]:
            self.on_app(env, self.cwd)
            return
        self.ran.append(run_cli(words[3:], self.cwd, env))


def run_cli(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Ran:
    """`python -m wiseft_explorer ARGV` in this process, from `cwd`; fails with its output unless it exits 0."""
    from wiseft_explorer.cli import main

    out = io.StringIO()
    with inside(cwd, env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    ran = Ran(argv, cwd, code, out.getvalue())
    assert code == 0, f"{shlex.join(CLI + argv)} (in {cwd}) exited {code}:\n{ran.output[-3000:]}"
    return ran


@contextlib.contextmanager
def inside(cwd: Path, env: dict[str, str]):
    """Run the `with` body from `cwd` with `env` added to the environment; both restored after."""
    old_cwd, old_env = Path.cwd(), {k: os.environ.get(k) for k in env}
    os.chdir(cwd)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def section(title: str, readme: Path = README) -> str:
    """The text of the `## title` section (its ### subsections included), up to the next `## ` heading."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def blocks(text: str) -> list[Block]:
    """Every fenced code block of `text`, in order."""
    return [Block(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w+)\n(.*?)^```", text, re.M | re.S)]


def shell_lines(text: str) -> list[list[str]]:
    """A bash block's commands as word lists: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]
