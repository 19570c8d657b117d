"""What every external walker of ``mixedmap verify`` implements, and the values it returns.

An external walker is code nobody here wrote (drgn's libdrgn, volatility3) that reads the
page tables mixedmap built, as bytes, and says where a virtual address goes. Each walker
module wraps one tool behind :class:`Walker`; the driver (:mod:`mixedmap.verify.driver`)
builds the mappings and compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable


@attrs.frozen(kw_only=True)
class Built:
    """The mappings of one (arch, profile, mode) case, as they were asked for.

    ``vas`` are the addresses to translate (mapped ones first, then ``n_mapped`` onwards
    the unmapped sample); ``pas`` the physical address each must reach (-1: must fault);
    ``prot``/``special``/``size`` say how each page was mapped ("" for holes).
    """

    label: str
    machine: Machine
    pt: PageTable
    vmcore: Path
    vas: NDArray[np.uint64]
    pas: NDArray[np.int64]
    prot: tuple[str, ...]
    special: NDArray[np.bool_]
    size: NDArray[np.uint64]
    n_mapped: int
    #: Set when no vmcore could be written (the arch has no VerifyTarget): why, with the hint.
    no_vmcore: str | None = None


@attrs.frozen(kw_only=True)
class Answer:
    """What a walker said for one VA: a PA, or None (fault/not mapped), with its words."""

    pa: int | None
    detail: str = ""
    #: Set when the PA is right but something else the walker checks is not (permissions,
    #: accessed/dirty bits): the answer is a disagreement all the same.
    problem: str = ""


class Walker(Protocol):
    """One external walker."""

    #: Short name shown in the table ("drgn", "volatility3 Intel32e").
    name: str

    def missing(self) -> str | None:
        """None when the tool imports, else the reason and the install hint."""

    def cannot_walk(self, machine: Machine) -> str | None:
        """None when the tool walks this format, else why not (cited)."""

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        """A documented rule of the tool's own under which it does not map this leaf, if any."""

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        """Translate ``vas`` through ``built``'s tables (the tool's own per-VA API)."""
