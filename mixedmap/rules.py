"""The mm rules that differ between kernels, each named with the release that introduced it.

A :class:`Profile` says *which* kernel a Machine follows; this table says *what* that means
rule by rule. Code asks ``rule.applies(profile)`` instead of comparing versions, so every
version-dependent branch names its rule, and ``mixedmap diff`` can say which rule (kernel
function, file, release) makes two kernels answer differently. An operation that exists
only while a rule holds calls :func:`require` first, so asking the wrong kernel for it is
an :class:`UnsupportedRule` that names the profile and the release, before anything changes.

Releases come from the kernel's own history; where the reference marks one as unverified
the rule's ``note`` says so.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import attrs

from mixedmap.errors import UnsupportedOperation
from mixedmap.profiles import Profile

Version = tuple[int, ...]


def _fmt(v: Version) -> str:
    return ".".join(map(str, v))


@attrs.frozen
class Rule:
    """One kernel behaviour: in force from ``introduced`` up to (not including) ``removed``."""

    name: str
    #: The kernel function(s) that carry the rule, and where they live.
    function: str
    file: str
    introduced: Version
    summary: str
    removed: Version | None = None
    #: Provenance where the release is not certain, or a pointer to the commit.
    note: str = ""

    def applies(self, profile: Profile) -> bool:
        """Whether ``profile``'s kernel has this rule (recorded while :func:`consulted` runs)."""
        seen = _consulted.get()
        if seen is not None:
            seen.append(self)
        if profile.version < self.introduced:
            return False
        return self.removed is None or profile.version < self.removed

    @property
    def since(self) -> str:
        """``"3.7"``, or ``"2.6.26-3.19"`` for a rule that was removed again."""
        if self.removed is None:
            return _fmt(self.introduced)
        return f"{_fmt(self.introduced)}, removed in {_fmt(self.removed)}"

    def cite(self) -> str:
        """``function (file, since X)``: how a report or an error names the rule."""
        return f"{self.function} ({self.file}, since {self.since})"


class UnsupportedRule(UnsupportedOperation):
    """An operation asked of a kernel profile that does not have it (yet, or any more)."""

    def __init__(self, what: str, rule: Rule, profile: Profile) -> None:
        if profile.version < rule.introduced:
            why = f"it was introduced in {_fmt(rule.introduced)}"
        else:
            assert rule.removed is not None
            why = f"it was removed in {_fmt(rule.removed)}"
            if rule.name in _REPLACED_BY:
                why += f"; {_REPLACED_BY[rule.name]}"
        super().__init__(f"{what} does not exist in kernel {profile}: {why} ({rule.file})")
        self.rule = rule
        self.profile = profile


_consulted: contextvars.ContextVar[list[Rule] | None] = contextvars.ContextVar(
    "mixedmap_rules_consulted", default=None
)


@contextlib.contextmanager
def consulted() -> Iterator[list[Rule]]:
    """Collect every rule asked while the block runs, in order (repeats included).

    ``mixedmap diff`` runs each scenario step inside one, so a difference between kernels is
    attributed to the rules that step actually consulted, not to a guess from the step's op.
    """
    seen: list[Rule] = []
    token = _consulted.set(seen)
    try:
        yield seen
    finally:
        _consulted.reset(token)


def require(rule: Rule, profile: Profile, what: str | None = None) -> None:
    """Raise :class:`UnsupportedRule` unless ``profile`` has ``rule``."""
    if not rule.applies(profile):
        raise UnsupportedRule(what or rule.function, rule, profile)


# -- the table ------------------------------------------------------------------------------------
FILEMAP_XIP = Rule(
    "filemap_xip",
    "get_xip_mem / xip_file_fault",
    "mm/filemap_xip.c",
    (2, 6, 26),
    "XIP files are VM_MIXEDMAP and fault through ->get_xip_mem and vm_insert_mixed",
    removed=(4, 0),
    note="2.6.26 replaced ->get_xip_page with ->get_xip_mem; 4.0 removed filemap_xip for DAX",
)
XIP_SPARSE_VM_INSERT_PAGE = Rule(
    "xip_sparse_vm_insert_page",
    "xip_file_fault",
    "mm/filemap_xip.c",
    (2, 6, 27),
    "the sparse (hole) page is mapped with vm_insert_page and the fault returns NOPAGE",
    removed=(4, 0),
    note="commit 538f8ea6 (Aug 2008)",
)
BAD_PAGE_MAP_REPORT = Rule(
    "bad_page_map_report",
    "vm_normal_page / print_bad_pte",
    "mm/memory.c",
    (2, 6, 28),
    "a PTE vm_normal_page cannot account for is reported ('bad page map') and treated as special",
    note="the badpage series (print_bad_pte, highest_memmap_pfn) went into 2.6.28",
)
ZERO_PAGE = Rule(
    "zero_page",
    "do_anonymous_page",
    "mm/memory.c",
    (2, 6, 32),
    "an anonymous read fault maps the shared zero pfn, with the special bit where the arch has it",
    note="'mm: reinstate ZERO_PAGE' (2.6.32); 2.6.24-2.6.31 gave a fresh zeroed page",
)
FORK_COPIES_MIXEDMAP = Rule(
    "fork_copies_mixedmap",
    "vma_needs_copy",
    "mm/memory.c",
    (3, 7),
    "fork copies the page tables of every PFNMAP or MIXEDMAP VMA (VM_INSERTPAGE folded into MIXEDMAP)",
)
VM_INSERT_PAGE_SETS_MIXEDMAP = Rule(
    "vm_insert_page_sets_mixedmap",
    "vm_insert_page",
    "mm/memory.c",
    (3, 7),
    "vm_insert_page sets VM_MIXEDMAP instead of VM_INSERTPAGE",
)
REMAP_DONTEXPAND_DONTDUMP = Rule(
    "remap_dontexpand_dontdump",
    "remap_pfn_range",
    "mm/memory.c",
    (3, 7),
    "remap_pfn_range sets VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP (VM_RESERVED is gone)",
    note="the reference gives 3.7 from memory",
)
VMF_INSERT = Rule(
    "vmf_insert",
    "vmf_insert_pfn / vmf_insert_mixed",
    "mm/memory.c",
    (4, 17),
    "the insert family returns VM_FAULT_* codes; an already populated PTE is NOPAGE, not -EBUSY",
)
DAX = Rule(
    "dax",
    "dax_iomap_fault",
    "fs/dax.c",
    (4, 0),
    "files on persistent memory are mapped by DAX, which replaced filemap_xip",
)
PIN_USER_PAGES = Rule(
    "pin_user_pages",
    "pin_user_pages / unpin_user_pages",
    "mm/gup.c",
    (5, 6),
    "FOLL_PIN: pins count GUP_PIN_COUNTING_BIAS in the refcount and are dropped with unpin_user_pages",
)
GUP_EEXIST = Rule(
    "gup_eexist",
    "follow_page_pte / follow_pfn_pte",
    "mm/gup.c",
    (4, 5),
    "GUP of a special PTE ends with -EEXIST (a populate carries on past it) instead of -EFAULT",
)
FIND_NORMAL_PAGE = Rule(
    "find_normal_page",
    "__vm_normal_page / vm_ops->find_normal_page",
    "mm/memory.c",
    (6, 18),
    "a special PTE's VMA may name the page behind it (find_special_page until the rename)",
)

RULES: tuple[Rule, ...] = (
    FILEMAP_XIP,
    XIP_SPARSE_VM_INSERT_PAGE,
    BAD_PAGE_MAP_REPORT,
    ZERO_PAGE,
    FORK_COPIES_MIXEDMAP,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    REMAP_DONTEXPAND_DONTDUMP,
    DAX,
    GUP_EEXIST,
    VMF_INSERT,
    PIN_USER_PAGES,
    FIND_NORMAL_PAGE,
)
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}

_REPLACED_BY = {
    "filemap_xip": "DAX (fs/dax.c) replaced it: map the file through a DAX-capable device",
    "xip_sparse_vm_insert_page": "DAX (fs/dax.c) replaced filemap_xip",
}
