"""mm event traces: one JSON object per line, written through structlog.

``Tracer(path)`` attached to a Machine (``machine.tracer = tracer`` before its mms are
created, or ``Tracer.attach(machine, path)``) records every fault, COW, insert, zap,
fork-copy and gup step with the mm, VMA, address, pfn, PTE before and after in hex, and the
kernel function the step models. With no tracer the mm paths pay one ``is None`` test.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

import structlog

from mixedmap.machine import Machine


def _hex(v: Any) -> Any:
    return f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else v


class Tracer:
    """A JSON-lines trace of mm events (structlog with a private processor chain)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[str] = open(self.path, "w")  # noqa: SIM115 - closed by close()
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(self._fh),
            processors=[structlog.processors.JSONRenderer(sort_keys=True)],
        )
        self.events = 0
        self._root: Tracer = self

    @classmethod
    def attach(cls, machine: Machine, path: str | Path) -> Tracer:
        """Trace ``machine`` into a new file at ``path``: its existing and future mms."""
        return cls(path).attach_to(machine)

    def attach_to(self, machine: Machine) -> Tracer:
        """Trace ``machine`` (existing and future mms) into this tracer's file."""
        machine.tracer = self
        machine.pages.tracer = self
        for mm in machine.mms:
            mm._tracer = self
        return self

    def bind(self, **context: Any) -> Tracer:
        """A tracer writing to the same file whose records also carry ``context`` (e.g. the
        arch and kernel of one run when a scenario runs on several machines)."""
        child = object.__new__(Tracer)
        child.path, child._fh, child._root = self.path, self._fh, self._root
        child._log = self._log.bind(**context)
        child.events = 0
        return child

    def __call__(self, *, event: str, func: str, mm: int, addr: int, **fields: Any) -> None:
        record = {k: _hex(v) for k, v in fields.items()}
        self._log.msg(event, func=func, mm=mm, addr=_hex(addr), **record)
        self.events += 1
        if self._root is not self:
            self._root.events += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize(path: str | Path) -> dict[str, dict[str, int]]:
    """Counts per event and per kernel function of a trace file."""
    events: Counter[str] = Counter()
    funcs: Counter[str] = Counter()
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not a JSON object: {exc}") from None
            events[rec.get("event", "?")] += 1
            funcs[rec.get("func", "?")] += 1
    return {"events": dict(events.most_common()), "functions": dict(funcs.most_common())}
