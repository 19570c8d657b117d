"""README.md's "What changed since 2008" block is ``mixedmap diff`` output, regenerated, not typed.

The block between ``<!-- diff:begin SCENARIO ARCH -->`` and ``<!-- diff:end -->`` (inside a
``text`` fence) must equal what ``mixedmap diff SCENARIO --arch ARCH`` prints at COLUMNS=80,
line by line with trailing blanks dropped (rich pads centred titles and wrapped legend lines;
editors strip them). When a rule, a scenario or the renderer changes, regenerate it::

    python -m tests.test_readme_diff --write
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixedmap.cli import run
from mixedmap.plugin.registry import default_registry

README = Path(__file__).resolve().parents[1] / "README.md"
WIDTH = 80
BLOCK = re.compile(
    r"(?P<begin><!-- diff:begin (?P<scenario>\S+) (?P<arch>\S+) -->\n)```text\n(?P<body>.*?)```\n(?P<end><!-- diff:end -->)",
    re.S,
)
REGENERATE = "python -m tests.test_readme_diff --write"


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def generate(scenario: str, arch: str) -> str:
    """``mixedmap diff SCENARIO --arch ARCH`` at 80 columns, in-process, as the block holds it."""
    out = io.StringIO()
    with _columns(WIDTH), contextlib.redirect_stdout(out):
        code = run(["diff", scenario, "--arch", arch])
    if code != 0:
        raise RuntimeError(f"mixedmap diff {scenario} --arch {arch} exited {code}")
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


def _block(text: str) -> re.Match[str]:
    found = list(BLOCK.finditer(text))
    assert len(found) == 1, (
        "README.md needs exactly one <!-- diff:begin SCENARIO ARCH --> ... <!-- diff:end --> block"
    )
    return found[0]


def test_readme_diff_block_is_current() -> None:
    m = _block(README.read_text())
    if m["arch"] not in default_registry().names:
        pytest.skip(f"the README block is for {m['arch']}, which is not installed")
    want = generate(m["scenario"], m["arch"])
    assert m["body"] == want, (
        f"README.md's 'What changed since 2008' block is not the current output of "
        f"`mixedmap diff {m['scenario']} --arch {m['arch']}` at COLUMNS={WIDTH}; regenerate it with: {REGENERATE}"
    )


def test_readme_diff_block_sits_after_what_is_modelled() -> None:
    text = README.read_text()
    modelled = text.index("## What is modelled")
    section = text.index("## What changed since 2008")
    following = [i for i in (m.start() for m in re.finditer(r"^## ", text, re.M)) if i > modelled]
    assert following and following[0] == section
    assert section < _block(text).start()


def write() -> bool:
    """Rewrite the block in place (re-reading README.md just before); True if it changed."""
    text = README.read_text()
    m = _block(text)
    body = generate(m["scenario"], m["arch"])
    if body == m["body"]:
        return False
    new = text[: m.start()] + f"{m['begin']}```text\n{body}```\n{m['end']}" + text[m.end() :]
    if README.read_text() != text:  # someone edited it meanwhile: do not overwrite their change
        raise RuntimeError("README.md changed while the block was generated; run again")
    README.write_text(new)
    return True


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {REGENERATE}")
    print("README.md updated" if write() else "README.md already current")
