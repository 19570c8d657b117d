"""The scenario file format: attrs value types, structured from TOML by cattrs.

One class per step ``op`` (a tagged union on the ``op`` key), so an unknown key on a step is
an error that names the step and the key, not a silently ignored typo. The format is
documented in ``docs/scenarios.md``; the bundled files in ``mixedmap/scenarios`` use all of it.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

# -- conditions and targets -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class When:
    """Run a step (or a check) only on some runs: lets one file state each scheme's outcome."""

    special: bool | None = None  # the profile has pte_special
    lockless_gup: bool | None = None  # the arch has a lockless get_user_pages_fast
    kernels: list[str] | None = None
    arches: list[str] | None = None
    #: device name -> whether its frames must have struct pages for the step to run
    struct_page: dict[str, bool] | None = None
    #: kernel rule name (mixedmap.rules) -> whether the run's kernel must have it
    rules: dict[str, bool] | None = None


@attrs.frozen(kw_only=True)
class Machine:
    ram: str | int = "256M"
    #: arch options per arch name (``{s390x = {edat1 = true}}``), as ``Machine(**options)``
    options: dict[str, dict[str, str | int | bool]] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class ArchDriver:
    """A per-arch replacement of a device's driver (e.g. s390x: dcssblk with a segment)."""

    driver: str
    params: dict[str, str | int | bool] = attrs.Factory(dict)
    #: the kernels whose machines have this driver model (default: every kernel the file runs)
    kernels: list[str] | None = None


@attrs.frozen(kw_only=True)
class KernelDevice:
    """What one kernel profile changes about a ``range`` device: 6.18 fs-dax needs ZONE_DEVICE
    struct pages where 2.6.2x filemap_xip needed none, so a file states both set-ups."""

    memmap: bool | None = None


@attrs.frozen(kw_only=True)
class Device:
    """An XIP block device. ``driver = "range"`` is the core's arch-neutral device over a
    physical range, with or without struct pages; any other name is an arch plugin's driver
    model (``mixedmap xip drivers`` lists them), created with ``params``."""

    name: str
    driver: str = "range"
    start: str | int | None = None
    size: str | int = "16M"
    memmap: bool = False
    read_only: bool = False
    params: dict[str, str | int | bool] = attrs.Factory(dict)
    arch: dict[str, ArchDriver] = attrs.Factory(dict)
    kernel: dict[str, KernelDevice] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class File:
    """A file on the XIP filesystem of ``device``: ``pages`` pages of deterministic bytes
    (each page starts with its name and page number), ``holes`` unallocated, or ``text``."""

    device: str
    name: str
    pages: int = 1
    holes: list[int] = attrs.Factory(list)
    text: str | None = None


# -- steps ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Step:
    OP: ClassVar[str] = ""
    when: When | None = None
    #: what the outcome must contain: a string is shorthand for ``{outcome = ...}``
    expect: dict[str, str | int | bool] | str | None = None
    note: str = ""


@attrs.frozen(kw_only=True)
class Mmap(Step):
    OP: ClassVar[str] = "mmap"
    process: str
    name: str
    pages: int
    prot: str = "r"
    shared: bool = False
    file: str | None = None  # "device/file"; none: anonymous memory
    device: str | None = None  # a character device for driver calls (vm_insert_*, remap)
    vm_flags: list[str] = attrs.Factory(list)  # what the device driver's ->mmap sets
    open: str | None = None  # "r", "w", "rw": default "rw" for a shared writable map
    populate: bool = False  # MAP_POPULATE, as 2.6.27 make_pages_present behaves
    pgoff: int = 0


@attrs.frozen(kw_only=True)
class _OnMap(Step):
    process: str
    map: str
    page: int = 0


@attrs.frozen(kw_only=True)
class Read(_OnMap):
    OP: ClassVar[str] = "read"
    offset: int = 0
    length: int = 16


@attrs.frozen(kw_only=True)
class Write(_OnMap):
    OP: ClassVar[str] = "write"
    offset: int = 0
    data: str = ""


@attrs.frozen(kw_only=True)
class Touch(_OnMap):
    OP: ClassVar[str] = "touch"
    pages: int = 1
    write: bool = False


@attrs.frozen(kw_only=True)
class FaultIn(_OnMap):
    OP: ClassVar[str] = "fault_in"
    pages: int | None = None  # default: to the end of the mapping
    write: bool = False


@attrs.frozen(kw_only=True)
class Munmap(_OnMap):
    OP: ClassVar[str] = "munmap"
    pages: int | None = None


@attrs.frozen(kw_only=True)
class Mprotect(_OnMap):
    OP: ClassVar[str] = "mprotect"
    pages: int | None = None
    prot: str = "r"


@attrs.frozen(kw_only=True)
class Gup(_OnMap):
    OP: ClassVar[str] = "gup"
    pages: int = 1
    write: bool = False
    fast: bool = False  # get_user_pages_fast instead of get_user_pages
    repeat: int = 1
    keep: bool = False  # hold the references/pins (default: released after each call)
    #: pin_user_pages(_fast) (FOLL_PIN, 5.6) instead of get_user_pages(_fast) (FOLL_GET)
    pin: bool = False
    #: FOLL_LONGTERM (5.2): only with ``pin`` (is_valid_gup_args)
    longterm: bool = False
    #: the references/pins ``keep`` holds are meant to outlive the run (a leak the file states)
    leak: bool = False


@attrs.frozen(kw_only=True)
class Unpin(_OnMap):
    """``unpin_user_pages`` (5.6) of every pin the process holds on ``map`` from earlier
    ``gup`` steps with ``pin`` and ``keep``; ``dirty``: ``unpin_user_pages_dirty_lock``."""

    OP: ClassVar[str] = "unpin"
    dirty: bool = False


@attrs.frozen(kw_only=True)
class Put(_OnMap):
    """``put_page`` of every reference the process holds on ``map`` from earlier ``gup``
    steps with ``keep`` and without ``pin`` (FOLL_GET)."""

    OP: ClassVar[str] = "put"


@attrs.frozen(kw_only=True)
class _Insert(_OnMap):
    pfn: str | int


@attrs.frozen(kw_only=True)
class VmInsertPfn(_Insert):
    OP: ClassVar[str] = "vm_insert_pfn"


@attrs.frozen(kw_only=True)
class VmInsertMixed(_Insert):
    OP: ClassVar[str] = "vm_insert_mixed"


@attrs.frozen(kw_only=True)
class VmInsertPage(_Insert):
    OP: ClassVar[str] = "vm_insert_page"


@attrs.frozen(kw_only=True)
class VmfInsertPfn(_Insert):
    OP: ClassVar[str] = "vmf_insert_pfn"


@attrs.frozen(kw_only=True)
class VmfInsertPfnProt(_Insert):
    OP: ClassVar[str] = "vmf_insert_pfn_prot"
    prot: str = "r"  # the caller's pgprot, as vm_get_page_prot of these rights and the VMA's SHARED


@attrs.frozen(kw_only=True)
class VmfInsertMixed(_Insert):
    OP: ClassVar[str] = "vmf_insert_mixed"


@attrs.frozen(kw_only=True)
class VmfInsertMixedMkwrite(_Insert):
    OP: ClassVar[str] = "vmf_insert_mixed_mkwrite"


@attrs.frozen(kw_only=True)
class VmInsertPages(_Insert):
    """``vm_insert_pages``: ``pages`` consecutive pfns from ``pfn`` at consecutive pages."""

    OP: ClassVar[str] = "vm_insert_pages"
    pages: int = 1


@attrs.frozen(kw_only=True)
class RemapPfnRange(_Insert):
    OP: ClassVar[str] = "remap_pfn_range"
    pages: int | None = None


@attrs.frozen(kw_only=True)
class ZapVmaPtes(_OnMap):
    OP: ClassVar[str] = "zap_vma_ptes"
    pages: int | None = None


@attrs.frozen(kw_only=True)
class Fork(Step):
    OP: ClassVar[str] = "fork"
    process: str
    child: str


@attrs.frozen(kw_only=True)
class Exit(Step):
    OP: ClassVar[str] = "exit"
    process: str


@attrs.frozen(kw_only=True)
class Truncate(Step):
    OP: ClassVar[str] = "truncate"
    file: str
    size: str | int


@attrs.frozen(kw_only=True)
class Inspect(Step):
    """Observe without changing anything: a process's RSS, the PTE at a mapping's page and
    the struct page behind it, or the struct page of a named pfn (with deltas from the
    start of the steps for pfns named statically)."""

    OP: ClassVar[str] = "inspect"
    process: str | None = None
    map: str | None = None
    page: int = 0
    pfn: str | int | None = None


STEP_TYPES: tuple[type[Step], ...] = (
    Mmap,
    Read,
    Write,
    Touch,
    FaultIn,
    Munmap,
    Mprotect,
    Gup,
    Unpin,
    Put,
    VmInsertPfn,
    VmInsertMixed,
    VmInsertPage,
    VmfInsertPfn,
    VmfInsertPfnProt,
    VmfInsertMixed,
    VmfInsertMixedMkwrite,
    VmInsertPages,
    RemapPfnRange,
    ZapVmaPtes,
    Fork,
    Exit,
    Truncate,
    Inspect,
)
OPS = {t.OP: t for t in STEP_TYPES}


# -- the guests experiment ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Guests:
    """N guests mapping one shared read-only XIP image (the series' memmap argument)."""

    count: int = 100
    image_size: str | int = "1G"
    #: "pre-series" (struct pages for the image, <=2.6.25) and kernel profiles
    behaviours: list[str] = attrs.Factory(lambda: ["pre-series", "2.6.26", "2.6.27"])
    drivers: dict[str, ArchDriver] = attrs.Factory(dict)
    plot: str | None = "guests-memmap"


# -- the file -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Header:
    name: str
    description: str = ""
    reference: str = ""
    arches: list[str] | None = None  # default: every installed arch
    kernels: list[str] | None = None  # default: the default profile (2.6.27)
    processes: list[str] = attrs.Factory(list)  # the mms that exist before the first step


@attrs.frozen(kw_only=True)
class Scenario:
    scenario: Header
    machine: Machine = attrs.Factory(Machine)
    devices: list[Device] = attrs.Factory(list)
    files: list[File] = attrs.Factory(list)
    steps: list[Step] = attrs.Factory(list)
    guests: Guests | None = None
