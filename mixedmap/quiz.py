"""Seeded exercises on real page-table formats and real mm rules (``mixedmap quiz``).

The paging simulators students use teach with toy formats; these questions use the arch's
own entries, geometry and byte order, and the kernel profile's own rules. Every answer is
what the model computes (a walk of the tables shown, the helpers' verdicts, a short run of
the mm layer), so a question is as right as the model, and the tests check the answers on
every arch against independent walkers and the kernel's rules. The same (arch, kernel,
kinds, seed) gives the same questions: one RNG per question, seeded by text.

Kinds:

* ``translate``: a table dump in hex and a VA; the PA, or where the walk stops.
* ``decode``: one PTE value; its pfn and what present/write/dirty/young/special say.
* ``refcount``: a short scenario; refcount, mapcount and RSS afterwards.
* ``cow``: a write after a short scenario; does it fault, is a page copied, who sees it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from mixedmap.errors import SIGSEGV
from mixedmap.machine import Machine
from mixedmap.mm import memory
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, VM
from mixedmap.pgtable import PageTable, decode_bits
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.rules import ZERO_PAGE

KINDS = ("translate", "decode", "refcount", "cow")


@attrs.frozen
class Question:
    """One exercise: what the student sees, the answer, and the working that leads there."""

    number: int
    kind: str
    arch: str
    kernel: str
    mode: str
    seed: int
    prompt: tuple[str, ...]
    #: machine-checkable answer (JSON types only), what a grader compares
    answer: dict[str, Any]
    working: tuple[str, ...]
    #: how the question was built (pfns, helpers applied, the template), for checking it
    params: dict[str, Any] = attrs.field(factory=dict)
    #: the machine the answer was computed on (not part of the question's JSON)
    machine: Machine | None = attrs.field(default=None, eq=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "kind": self.kind,
            "arch": self.arch,
            "kernel": self.kernel,
            "mode": self.mode,
            "seed": self.seed,
            "prompt": list(self.prompt),
            "answer": self.answer,
            "working": list(self.working),
            "params": self.params,
        }


def make_quiz(
    arch: str,
    kernel: str | None = None,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    count: int = 4,
    *,
    registry: ArchRegistry | None = None,
    **arch_options: Any,
) -> list[Question]:
    """``count`` questions cycling through ``kinds``, all determined by ``seed`` (and the
    arch options that pick a mode, as ``Machine(**arch_options)``)."""
    bad = [k for k in kinds if k not in _MAKERS]
    if bad or not kinds:
        raise ValueError(f"unknown quiz kind(s) {bad or kinds!r}; kinds: {', '.join(KINDS)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    Machine(arch, kernel, ram="16M", registry=registry, **arch_options)  # bad arch/profile/mode: fail first
    out = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        opts = ",".join(f"{k}={v}" for k, v in sorted(arch_options.items()))
        rng = random.Random(f"mixedmap-quiz:{arch}:{kernel}:{opts}:{kind}:{seed}:{n}")
        m = Machine(arch, kernel, ram="256M", registry=registry, **arch_options)
        out.append(_MAKERS[kind](n + 1, m, rng, seed))
    return out


def _head(m: Machine) -> str:
    return f"{m.arch} {m.fmt.mode} (kernel {m.profile.name})"


def _q(n: int, kind: str, m: Machine, seed: int, **fields: Any) -> Question:
    return Question(n, kind, m.arch, m.profile.name, m.fmt.mode, seed, machine=m, **fields)


# -- translate ------------------------------------------------------------------------------
def _user_limit(m: Machine) -> int:
    fmt = m.fmt
    return 1 << (fmt.va_bits - 1) if fmt.va_rule == "canonical" else 1 << fmt.va_bits


def _bits_of(mask: int) -> str:
    lo, hi = (mask & -mask).bit_length() - 1, mask.bit_length() - 1
    return f"bit {hi}" if hi == lo else f"bits {hi}-{lo}"


def _geometry(m: Machine) -> list[str]:
    fmt = m.fmt
    lines = [f"Geometry: {fmt.entry_size}-byte entries, {fmt.byteorder}-endian in memory;"]
    for lv in fmt.levels:
        hi = lv.shift + lv.index_bits - 1
        fields = ", ".join(f"{b.name} {_bits_of(b.mask)}" for b in lv.bits if b.kind == "field")
        lines.append(
            f"  {lv.name} ({lv.hw_name}): VA bits {hi}-{lv.shift}" + (f"; entry {fields}" if fields else "")
        )
    lines.append(f"  page offset: VA bits {fmt.page_shift - 1}-0; PTE pfn: {_bits_of(fmt.pfn_mask)}")
    return lines


def _dump(m: Machine, pt: PageTable, vas: Sequence[int]) -> list[str]:
    """Every non-empty entry of every table the walks of ``vas`` visit, table by table."""
    fmt = m.fmt
    seen: dict[int, int] = {}
    for va in vas:
        for i, step in enumerate(pt.walk(va)):
            seen.setdefault(step.table_pa, i)
    lines = []
    for table, i in sorted(seen.items(), key=lambda t: (t[1], t[0])):
        lv = fmt.levels[i]
        empty = int(m.mode.mode.ops.empty_entry(i))
        raw = m.mem.read(table, lv.entries * fmt.entry_size)
        vals = np.frombuffer(raw, dtype=fmt.dtype)
        idx = np.flatnonzero(vals != np.asarray(empty, dtype=np.uint64).astype(fmt.dtype))
        cells = ", ".join(f"[{k}] {int(vals[k]):#018x}" for k in idx.tolist())
        lines.append(f"  {lv.name} table at PA {table:#x}: {cells or '(all empty)'}")
        if empty:
            lines.append(f"    (other entries hold the empty value {empty:#x})")
    return lines


def _translate(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    fmt, ps = m.fmt, m.page_size
    pt = m.new_pagetable()
    limit = min(_user_limit(m), 1 << 40) // ps
    vpn = rng.randrange(16, limit - 16)
    pfns = [rng.randrange(0x100, 0x10000) for _ in range(3)]
    far = (vpn + limit // 2) % (limit - 16)
    layout = [(vpn, pfns[0]), (vpn + 1, pfns[1]), (far, pfns[2])]
    fate = ("mapped", "hole", "mapped", "far hole", "mapped")[n % 5]  # every few, a VA that faults
    for v, pfn in layout:
        if fate == "hole" and v == vpn:
            continue
        pt.map(v * ps, pfn, rng.choice(("r", "rw")))
    target_vpn = (vpn + limit // 4) % (limit - 16) if fate == "far hole" else vpn
    va = target_vpn * ps + rng.randrange(0, ps, 8)
    steps = pt.walk(va)
    leaf = pt.lookup(va)
    root = pt.root
    prompt = [
        f"Q{n} [{_head(m)}] translate VA {va:#x}: give the physical address, or the level where the walk stops.",
        *_geometry(m),
        f"Root ({fmt.root_name}): {root:#x}",
        "Memory:",
        *_dump(m, pt, [va] + [v * ps for v, _ in layout]),
    ]
    working = [f"root {fmt.root_name} {root:#x} -> top table at PA {steps[0].table_pa:#x}"]
    for i, s in enumerate(steps):
        lv = fmt.levels[i]
        working.append(
            f"{s.level}: index = (VA >> {lv.shift}) & {lv.entries - 1:#x} = {s.index}; "
            f"entry at {s.table_pa:#x} + {s.index} * {fmt.entry_size} = {s.entry_pa:#x} holds {s.value:#x} ({s.kind})"
        )
    if leaf is None:
        answer: dict[str, Any] = {"mapped": False, "stops_at": steps[-1].level}
        working.append(f"not mapped: the walk stops at the {steps[-1].level} entry")
    else:
        answer = {"mapped": True, "pa": f"{leaf.pa:#x}", "pfn": leaf.pfn}
        off = va & (leaf.page_size - 1)
        working.append(f"PA = pfn {leaf.pfn:#x} << {fmt.page_shift} | offset {off:#x} = {leaf.pa:#x}")
    return _q(
        n, "translate", m, seed, prompt=tuple(prompt), answer=answer, working=tuple(working),
        params={"va": f"{va:#x}", "fate": fate, "root": f"{root:#x}"},
    )  # fmt: skip


# -- decode ---------------------------------------------------------------------------------
def _decode(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    fmt, ops, bm = m.fmt, m.mode.mode.ops, m.mode
    pfn = rng.randrange(1, min(fmt.max_pfn, 1 << 28))
    idx = rng.randrange(16)
    pte = int(ops.pfn_pte(pfn, fmt.protection_map[idx]))
    applied = []
    for name in ("pte_mkdirty", "pte_mkyoung"):
        if rng.random() < 0.5:
            pte = int(getattr(ops, name)(pte))
            applied.append(name)
    if fmt.special_mask is not None and rng.random() < 0.5:
        pte = int(bm.pte_mkspecial(np.array([pte], dtype=np.uint64))[0])
        applied.append("pte_mkspecial")
    special = bool(bm.pte_special(np.array([pte], dtype=np.uint64))[0])
    bits = list(decode_bits(pte, fmt.pte_bits))
    answer: dict[str, Any] = {
        "pfn": int(ops.pte_pfn(pte)),
        "present": bool(ops.pte_present(pte)),
        "write": bool(ops.pte_write(pte)),
        "dirty": bool(ops.pte_dirty(pte)),
        "young": bool(ops.pte_young(pte)),
        "special": special,
        "bits": bits,
    }
    named = ", ".join(f"{b.name}={_bits_of(b.mask)}" for b in fmt.pte_bits if b.kind != "field")
    prompt = (
        f"Q{n} [{_head(m)}] decode the PTE {pte:#018x}: its pfn, and whether it is present, writable, "
        "dirty, young and special.",
        f"Named bits: {named}",
        f"pfn: {_bits_of(fmt.pfn_mask)}; special bit: "
        + (f"{fmt.special_mask:#x}" if fmt.special_mask is not None else "none in this kernel (scheme B)"),
    )
    working = [
        f"pfn = (pte & {fmt.pfn_mask:#x}) >> {fmt.pfn_shift} = {answer['pfn']:#x}",
        f"bits set: {', '.join(bits) or 'none'}",
        "present/write/dirty/young as the arch's pte_present/pte_write/pte_dirty/pte_young read them: "
        + ", ".join(f"{k}={answer[k]}" for k in ("present", "write", "dirty", "young")),
    ]
    if not fmt.tracks_young_dirty:
        working.append(
            "this kernel keeps referenced/changed in the storage key: pte_dirty/pte_young are constant"
        )
    working.append(f"special = {special}" + ("" if fmt.special_mask is not None else " (no special bit)"))
    return _q(
        n, "decode", m, seed, prompt=prompt, answer=answer, working=tuple(working),
        params={"pfn": pfn, "prot_index": idx, "applied": applied},
    )  # fmt: skip


# -- refcount -------------------------------------------------------------------------------
def _pte_pfn(mm: MM, va: int) -> int | None:
    leaf = mm.pt.lookup(va)
    return None if leaf is None else leaf.pfn


def _counts(m: Machine, pfn: int | None) -> dict[str, Any]:
    info = None if pfn is None else m.page(pfn)
    if info is None:
        return {"struct_page": False}
    return {"struct_page": True, "refcount": info.refcount, "mapcount": info.mapcount}


def _refcount_fork(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    ps = m.page_size
    p = m.new_mm()
    a = p.mmap(2 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    p.write(a, b"x")
    child_writes = rng.random() < 0.5
    c = p.fork()
    steps = ["P: mmap 2 pages private anonymous rw; P writes page 0", "P forks C"]
    if child_writes:
        c.write(a, b"y")
        steps.append("C writes page 0")
    pfn = _pte_pfn(p, a)
    ans = {**_counts(m, pfn), "rss_anon_P": p.rss["anon"], "rss_anon_C": c.rss["anon"]}
    work = [
        "P's write fault on untouched anonymous memory allocates a page: refcount 1, mapcount 1, anon RSS 1",
        "fork (copy_page_range, the VMA has an anon_vma) shares it write-protected: refcount 2, mapcount 2; C's anon RSS 1",
    ]
    if child_writes:
        work.append("C's write takes the write-protect fault and copies (wp_page_copy): P's page back to 1/1")
    work.append(f"P's page 0: refcount {ans.get('refcount')}, mapcount {ans.get('mapcount')}")
    return _q(
        n, "refcount", m, seed,
        prompt=(f"Q{n} [{_head(m)}] " + "; ".join(steps) + ". What are the refcount and mapcount of "
                "the page P maps at page 0, and the anonymous RSS of P and C?",),
        answer=ans, working=tuple(work), params={"template": "fork", "child_writes": child_writes},
    )  # fmt: skip


def _refcount_read(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    ps = m.page_size
    p = m.new_mm()
    a = p.mmap(4 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    k = rng.randrange(4)
    p.read(a + k * ps, 8)
    pfn = _pte_pfn(p, a + k * ps)
    zero = ZERO_PAGE.applies(m.profile)
    leaf = p.pt.lookup(a + k * ps)
    assert leaf is not None
    special = bool(m.mode.pte_special(np.array([leaf.value], dtype=np.uint64))[0])
    ans = {"rss_anon": p.rss["anon"], "special": special, "zero_page": zero}
    if not zero:
        ans.update(_counts(m, pfn))
    work = (
        [
            f"{ZERO_PAGE.cite()}: a read fault maps the shared zero page, read-only"
            + (", with a special PTE" if special else "")
            + "; nothing is allocated or counted: anon RSS 0"
        ]
        if zero
        else [
            f"before 2.6.32 ({ZERO_PAGE.name} came in {ZERO_PAGE.since}) the read fault allocates a zeroed page: "
            "refcount 1, mapcount 1, anon RSS 1"
        ]
    )
    return _q(
        n, "refcount", m, seed,
        prompt=(f"Q{n} [{_head(m)}] P mmaps 4 pages private anonymous rw and only reads page {k}. "
                "What is P's anonymous RSS, is the PTE special, and (if a page was allocated) its refcount "
                "and mapcount?",),
        answer=ans, working=tuple(work), params={"template": "read", "page": k},
    )  # fmt: skip


def _refcount_insert(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    ps = m.page_size
    (pfn,) = m.pages.alloc_pages(1).tolist()
    users = rng.randrange(1, 4)
    unmap_one = users > 1 and rng.random() < 0.5
    mms = []
    for _ in range(users):
        mm = m.new_mm()
        a = mm.mmap(ps, "rw", MAP_SHARED, file=DeviceFile("drv"))
        vma = mm.find_vma(a)
        assert vma is not None
        memory.vm_insert_page(vma, a, pfn)
        mms.append((mm, a))
    if unmap_one:
        mms[0][0].munmap(mms[0][1], ps)
    ans = _counts(m, pfn)
    vma = mms[-1][0].find_vma(mms[-1][1])
    assert vma is not None
    ans["vm_mixedmap"] = bool(vma.flags & VM.MIXEDMAP)
    maps = users - int(unmap_one)
    work = [
        "the driver's allocation holds 1 reference",
        f"each vm_insert_page (insert_page) takes a reference and a file mapcount: {users} x (+1, +1)",
    ]
    if unmap_one:
        work.append("munmap in one process (zap_pte_range) drops its reference and mapcount")
    work.append(f"refcount 1 + {maps} = {1 + maps}, mapcount {maps}")
    work.append(
        "6.18 (since 3.7) vm_insert_page sets VM_MIXEDMAP"
        if ans["vm_mixedmap"]
        else "2.6.x sets VM_INSERTPAGE, not MIXEDMAP"
    )
    return _q(
        n, "refcount", m, seed,
        prompt=(f"Q{n} [{_head(m)}] A driver allocates one page and vm_insert_page()s it into {users} "
                f"processes' shared mappings" + (", then one of them munmaps it" if unmap_one else "")
                + ". What are its refcount and mapcount, and is the VMA VM_MIXEDMAP?",),
        answer=ans, working=tuple(work), params={"template": "insert", "users": users, "unmap_one": unmap_one},
    )  # fmt: skip


# -- cow --------------------------------------------------------------------------------------
def _write(mm: MM, va: int, data: bytes) -> str:
    try:
        fault = mm.access(va, write=True).fault
    except SIGSEGV:
        return "SIGSEGV"
    mm.write(va, data)
    return fault


def _cow_fork(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    ps = m.page_size
    p = m.new_mm()
    a = p.mmap(ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    p.write(a, b"parent")
    c = p.fork()
    before = _pte_pfn(c, a)
    fault = _write(c, a, b"child!")
    after = _pte_pfn(c, a)
    ans = {"fault": fault, "copied": before != after, "other_sees_write": p.read(a, 6) == b"child!"}
    work = [
        "fork write-protects the private anonymous page in both (copy_one_pte / copy_present_pte)",
        "C's write finds a present, read-only PTE in a writable VMA: a write-protect fault (do_wp_page)",
        "the page is shared (mapcount 2), so C gets a copy (wp_page_copy); P keeps its bytes",
    ]
    return _q(
        n, "cow", m, seed,
        prompt=(f"Q{n} [{_head(m)}] P writes a private anonymous page, forks C, and C writes it. "
                "Does C's write fault (which fault), is the page copied, does P see the write?",),
        answer=ans, working=tuple(work), params={"template": "fork"},
    )  # fmt: skip


def _cow_readonly(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    ps = m.page_size
    p = m.new_mm()
    prot = rng.choice(("r", "rx"))
    read_first = rng.random() < 0.5
    a = p.mmap(ps, prot, MAP_PRIVATE | MAP_ANONYMOUS)
    if read_first:
        p.read(a, 1)
    fault = _write(p, a, b"w")
    ans = {"fault": fault, "copied": False, "other_sees_write": False}
    work = ["the VMA has no VM_WRITE: do_page_fault refuses the write before any COW (access_error): SIGSEGV"]
    first = "reads it, then writes it" if read_first else "writes it"
    return _q(
        n, "cow", m, seed,
        prompt=(f"Q{n} [{_head(m)}] P mmaps one page private anonymous with PROT {prot!r} and {first}. "
                "Does the write fault (which), is a page copied?",),
        answer=ans, working=tuple(work), params={"template": "readonly", "prot": prot, "read_first": read_first},
    )  # fmt: skip


def _cow_special(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
    """A private mapping of device memory (remap_pfn_range): COW from a page without a struct page."""
    ps = m.page_size
    start = 1 << 32 if m.mode.mode.memory.max_physmem_bits > 33 else 1 << 30
    m.add_region(
        "bar",
        start,
        16 * ps
        if 16 * ps >= 1 << m.mode.mode.memory.section_size_bits
        else 1 << m.mode.mode.memory.section_size_bits,
        memmap=False,
    )
    m.mem.write(start, b"device")
    p = m.new_mm()
    a = p.mmap(ps, "rw", MAP_PRIVATE, file=DeviceFile("bar"))
    vma = p.find_vma(a)
    assert vma is not None
    memory.remap_pfn_range(vma, a, start // ps, ps)
    before = _pte_pfn(p, a)
    fault = _write(p, a, b"D")
    after = _pte_pfn(p, a)
    ans = {
        "fault": fault,
        "copied": before != after,
        "device_changed": m.mem.read(start, 6) != b"device",
        "new_page_struct_page": _counts(m, after)["struct_page"],
    }
    work = [
        "remap_pfn_range on a private writable VMA maps the device pfn read-only (a COW mapping), "
        + (
            "special"
            if m.fmt.special_mask is not None
            else "recognised by vm_normal_page's pfn_valid/linearity rule"
        ),
        "the write takes a write-protect fault; vm_normal_page says no struct page, so do_wp_page copies "
        "the device bytes into a fresh anonymous page (cow_user_page) and maps it writable",
        "the device memory is unchanged",
    ]
    return _q(
        n, "cow", m, seed,
        prompt=(f"Q{n} [{_head(m)}] A driver remap_pfn_range()s one device page (no struct page) into "
                "P's private writable mapping; P writes it. Fault? Copy? Does the device change, and does "
                "the new page have a struct page?",),
        answer=ans, working=tuple(work), params={"template": "special"},
    )  # fmt: skip


def _pick(*makers: Callable[[int, Machine, random.Random, int], Question]) -> Callable[..., Question]:
    def make(n: int, m: Machine, rng: random.Random, seed: int) -> Question:
        return rng.choice(makers)(n, m, rng, seed)

    return make


_MAKERS: dict[str, Callable[[int, Machine, random.Random, int], Question]] = {
    "translate": _translate,
    "decode": _decode,
    "refcount": _pick(_refcount_fork, _refcount_read, _refcount_insert),
    "cow": _pick(_cow_fork, _cow_readonly, _cow_special),
}

__all__ = ["KINDS", "Question", "make_quiz"]
