"""Reading scenario files: TOML -> :class:`~mixedmap.scenario.schema.Scenario`, with errors
that name the file, the line and the key, raised before anything runs.

tomllib reports syntax errors with a line; cattrs reports type and unknown-key errors with a
key path (``$.steps[2].page``); :func:`key_lines` maps such a path back to the line of the file
that set it. Cross-references (a map used before its mmap, a page beyond a mapping, an
unknown op or prot) are checked here too, so a bad file never half-runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import cattrs
from cattrs.strategies import configure_tagged_union, configure_union_passthrough, include_subclasses

from mixedmap.errors import MixedmapError
from mixedmap.profiles import PROFILES
from mixedmap.rules import BY_NAME
from mixedmap.scenario import schema as S

BUNDLED_PACKAGE = "mixedmap.scenarios"


class ScenarioError(MixedmapError):
    """A scenario file is malformed; ``file``, ``line`` and ``key`` locate the culprit."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# -- converter ------------------------------------------------------------------------------


def _tag(cls: Any) -> str:
    return str(cls.OP)


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def strict(kind: type) -> Any:
        def hook(value: Any, _t: Any) -> Any:
            # TOML is typed: "4" for a page or 1 for a flag is a mistake, not a conversion.
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
            return value

        return hook

    for kind in (str, int, bool):
        conv.register_structure_hook(kind, strict(kind))
    configure_union_passthrough(str | int | bool, conv)
    include_subclasses(
        S.Step,
        conv,
        subclasses=S.STEP_TYPES,
        union_strategy=partial(configure_tagged_union, tag_name="op", tag_generator=_tag),
    )
    return conv


CONVERTER = _converter()


# -- key path -> line -----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEYVAL = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


_KEY_PART = re.compile(r"\s*(\"[^\"]*\"|'[^']*'|[^.]+?)\s*(?:\.|$)")


def _split_key(key: str) -> list[str]:
    """A dotted TOML key into its parts; a quoted part keeps its dots (``kernel."6.18"``)."""
    return [m.group(1).strip("\"'") for m in _KEY_PART.finditer(key.strip()) if m.group(1)]


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Line (1-based) where each key path is set; array-of-tables elements are indexed."""
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str | int, ...], int] = {}
    current: tuple[str | int, ...] = ()
    for n, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            parts = _split_key(m.group(2))
            path: tuple[str | int, ...] = ()
            for j, part in enumerate(parts):
                path = (*path, part)
                last_of_array = m.group(1) == "[[" and j == len(parts) - 1
                if path in counts and not last_of_array:
                    path = (*path, counts[path] - 1)
            if m.group(1) == "[[":
                counts[path] = counts.get(path, 0) + 1
                path = (*path, counts[path] - 1)
            current = path
            lines.setdefault(current, n)
        elif m := _KEYVAL.match(line):
            key = (*current, *_split_key(m.group(1)))
            lines.setdefault(key, n)
    return lines


def _parse_path(path: str) -> tuple[str | int, ...]:
    """``$.steps[2].expect`` -> ("steps", 2, "expect")."""
    out: list[str | int] = []
    for name, idx, key in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]", path):
        out.append(int(idx) if idx else (key or name))
    return tuple(out)


def _line_for(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# -- loading --------------------------------------------------------------------------------


def bundled() -> dict[str, str]:
    """Bundled scenario names -> their one-line description (``mixedmap run --list``)."""
    out: dict[str, str] = {}
    for res in sorted(resources.files(BUNDLED_PACKAGE).iterdir(), key=lambda r: r.name):
        if res.name.endswith(".toml"):
            data = tomllib.loads(res.read_text())
            out[res.name.removesuffix(".toml")] = str(data.get("scenario", {}).get("description", ""))
    return out


def resolve(name_or_path: str) -> tuple[str, str]:
    """(display name, text) of a file path or a bundled scenario name."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        try:
            return str(p), p.read_text()
        except OSError as exc:
            raise ScenarioError(str(p), None, "", f"cannot read: {exc.strerror}") from None
    res = resources.files(BUNDLED_PACKAGE) / f"{name_or_path}.toml"
    if not res.is_file():
        names = ", ".join(bundled())
        raise ScenarioError(name_or_path, None, "", f"no such file and no bundled scenario; bundled: {names}")
    return f"<bundled>/{name_or_path}.toml", res.read_text()


def _format(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required key missing"
    return cattrs.v.format_exception(exc, _type)


def loads(text: str, filename: str = "<string>") -> S.Scenario:
    """Parse and validate; every error is a :class:`ScenarioError` naming file, line and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise ScenarioError(filename, int(m.group(1)) if m else None, "", f"TOML syntax: {exc}") from None
    lines = key_lines(text)
    steps = data.get("steps", [])
    for i, st in enumerate(steps if isinstance(steps, list) else []):
        op = st.get("op") if isinstance(st, dict) else None
        if not isinstance(op, str) or op not in S.OPS:
            path: tuple[str | int, ...] = ("steps", i, "op")
            why = (
                "a step is a table ([[steps]])"
                if not isinstance(st, dict)
                else "missing"
                if op is None
                else f"unknown op {op!r}"
            )
            raise ScenarioError(
                filename, _line_for(lines, path), _dotted(path), f"{why}; ops: {', '.join(S.OPS)}"
            )
    try:
        scen = CONVERTER.structure(data, S.Scenario)
    except cattrs.BaseValidationError as exc:
        msg = cattrs.transform_error(exc, format_exception=_format)[0]
        text_, _, where = msg.rpartition(" @ ")
        path = _parse_path(where)
        if m := re.match(r"extra fields found \(([^,)]+)", text_):
            path = (*path, m.group(1))
            text_ = f"unknown key {m.group(1)!r}"
        raise ScenarioError(filename, _line_for(lines, path), _dotted(path), text_ or msg) from None
    for path, message in _check(scen):
        raise ScenarioError(filename, _line_for(lines, path), _dotted(path), message)
    return scen


def load(name_or_path: str) -> tuple[str, S.Scenario]:
    filename, text = resolve(name_or_path)
    return filename, loads(text, filename)


# -- cross-reference checks -----------------------------------------------------------------

_PROT = re.compile(r"^(none|r?w?x?)$")
_FLAGS = {"PFNMAP", "MIXEDMAP", "IO", "RESERVED", "DONTEXPAND", "DONTCOPY"}
PFN_SPEC = re.compile(r"^(?:(device|file|pte):([^+\s]+)|(ram))\s*(?:\+\s*(0x[0-9a-fA-F]+|\d+))?$")


def parse_pfn_spec(spec: str | int) -> tuple[str, str, int]:
    """``"device:xip0+3"`` -> ("device", "xip0", 3); ``"ram+0x800"`` -> ("ram", "", 0x800);
    an int -> ("pfn", "", value)."""
    if isinstance(spec, int):
        return "pfn", "", spec
    m = PFN_SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"pfn {spec!r}: use a number, device:NAME+N, file:DEV/NAME+N, ram+N or pte:MAP+N")
    return m.group(1) or "ram", m.group(2) or "", int(m.group(4) or "0", 0)


def _check(scen: S.Scenario) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if bool(scen.guests) == bool(scen.steps):
        yield ("scenario",), "a scenario has either [[steps]] or a [guests] table (exactly one)"
    devices = {d.name for d in scen.devices}
    for i, d in enumerate(scen.devices):
        if d.driver == "range" and d.start is None:
            yield ("devices", i, "start"), "a range device needs a physical start address"
        if d.driver != "range" and (d.start is not None or d.memmap):
            yield ("devices", i, "driver"), f"start/memmap are for driver 'range'; {d.driver} takes params"
        for k in d.kernel:
            if k not in PROFILES:
                yield (
                    ("devices", i, "kernel", k),
                    f"no kernel profile {k!r} (profiles: {', '.join(PROFILES)})",
                )
        if d.kernel and d.driver != "range":
            yield (
                ("devices", i, "kernel"),
                f"[devices.kernel.K] sets memmap of a 'range' device, not of {d.driver}",
            )
        for a, over in d.arch.items():
            for k in over.kernels or ():
                if k not in PROFILES:
                    yield (
                        ("devices", i, "arch", a, "kernels"),
                        f"no kernel profile {k!r} (profiles: {', '.join(PROFILES)})",
                    )
    files = set()
    for i, f in enumerate(scen.files):
        if f.device not in devices:
            yield ("files", i, "device"), f"no device {f.device!r} (devices: {sorted(devices)})"
        if f.pages < 1 or any(not 0 <= h < f.pages for h in f.holes):
            yield ("files", i, "holes"), f"pages must be >= 1 and holes within 0..{f.pages - 1}"
        files.add(f"{f.device}/{f.name}")
    procs: set[str] = set(scen.scenario.processes)
    maps: dict[tuple[str, str], int] = {}
    #: (process, map, pin) -> the first gup step that keeps references or pins there
    held: dict[tuple[str, str, bool], int] = {}
    for i, st in enumerate(scen.steps):
        at = ("steps", i)
        if isinstance(st.expect, dict) and not st.expect:
            yield (*at, "expect"), "empty expectation"
        if st.when and st.when.struct_page:
            for dev in st.when.struct_page:
                if dev not in devices:
                    yield (*at, "when", "struct_page"), f"no device {dev!r}"
        if st.when and st.when.rules:
            for name in st.when.rules:
                if name not in BY_NAME:
                    yield (
                        (*at, "when", "rules", name),
                        f"no kernel rule {name!r} (rules: {', '.join(BY_NAME)})",
                    )
        proc = getattr(st, "process", None)
        if proc is not None and proc not in procs:
            yield (*at, "process"), f"no process {proc!r} at this step (known: {sorted(procs)})"
        if isinstance(st, S.Mmap):
            if st.pages < 1:
                yield (*at, "pages"), "must be >= 1"
            if not _PROT.match(st.prot):
                yield (*at, "prot"), f"{st.prot!r}: use r, rw, rx, rwx or none"
            if st.file and st.device:
                yield (*at, "device"), "give file or device, not both"
            if st.file and st.file not in files:
                yield (*at, "file"), f"no file {st.file!r} (files: {sorted(files)})"
            if bad := set(st.vm_flags) - _FLAGS:
                yield (*at, "vm_flags"), f"unknown {sorted(bad)}; use {sorted(_FLAGS)}"
            if st.vm_flags and not st.device:
                yield (*at, "vm_flags"), "only a device mapping's driver sets vm_flags"
            if st.open not in (None, "r", "w", "rw"):
                yield (*at, "open"), f"{st.open!r}: use r, w or rw"
            maps[(st.process, st.name)] = st.pages
        elif isinstance(st, S.Fork):
            if st.child in procs:
                yield (*at, "child"), f"process {st.child!r} exists"
            procs.add(st.child)
            for (p, name), n in list(maps.items()):
                if p == st.process:
                    maps[(st.child, name)] = n
        elif isinstance(st, S.Truncate) and st.file not in files:
            yield (*at, "file"), f"no file {st.file!r} (files: {sorted(files)})"
        mp = getattr(st, "map", None)
        if proc is not None and mp is not None:
            if (proc, mp) not in maps:
                yield (*at, "map"), f"process {proc!r} has no mapping {mp!r} at this step"
            else:
                npages = maps[(proc, mp)]
                count = getattr(st, "pages", None) or 1
                first: int = getattr(st, "page", 0)
                if first < 0 or first + count > npages:
                    yield (*at, "page"), f"pages {first}..{first + count - 1} beyond {mp!r} ({npages} pages)"
        if isinstance(st, (S.Mprotect,)) and not _PROT.match(st.prot):
            yield (*at, "prot"), f"{st.prot!r}: use r, rw, rx, rwx or none"
        if isinstance(st, S.Gup):
            if st.repeat < 1 or st.pages < 1:
                yield (*at, "repeat"), "repeat and pages must be >= 1"
            if st.longterm and not st.pin:
                yield (
                    (*at, "longterm"),
                    "FOLL_LONGTERM is for pin_user_pages (is_valid_gup_args): add pin = true",
                )
            if st.leak and not st.keep:
                yield (*at, "leak"), "leak = true says the pins keep = true holds outlive the run: add keep"
            if st.keep and proc is not None and mp is not None:
                held.setdefault((proc, mp, st.pin), i)
        if isinstance(st, (S.Unpin, S.Put)) and proc is not None and mp is not None:
            pin = isinstance(st, S.Unpin)
            if (proc, mp, pin) not in held:
                what = (
                    "gup step with pin = true and keep = true"
                    if pin
                    else "gup step with keep = true (no pin)"
                )
                other = (
                    ' (its gup steps took FOLL_GET references: release them with op = "put")'
                    if pin and (proc, mp, False) in held
                    else ' (its gup steps took FOLL_PIN pins: release them with op = "unpin")'
                    if not pin and (proc, mp, True) in held
                    else ""
                )
                yield (*at, "map"), f"no earlier {what} of process {proc!r} on {mp!r}{other}"
            if st.page:
                yield (*at, "page"), f"{st.OP} releases everything held on the map; page is not used"
        if isinstance(st, S.VmfInsertPfnProt) and not _PROT.match(st.prot):
            yield (*at, "prot"), f"{st.prot!r}: use r, rw, rx, rwx or none"
        if isinstance(st, S.VmInsertPages) and st.pages < 1:
            yield (*at, "pages"), "must be >= 1"
        pfn = getattr(st, "pfn", None)
        if pfn is not None:
            try:
                kind, ref, _ = parse_pfn_spec(pfn)
            except ValueError as exc:
                yield (*at, "pfn"), str(exc)
            else:
                if kind == "device" and ref not in devices:
                    yield (*at, "pfn"), f"no device {ref!r}"
                if kind == "file" and ref not in files:
                    yield (*at, "pfn"), f"no file {ref!r}"
                if kind == "pte" and (proc is None or (proc, ref) not in maps):
                    yield (*at, "pfn"), f"pte:{ref} needs a process with mapping {ref!r}"
    if scen.guests is not None and scen.guests.count < 1:
        yield ("guests", "count"), "must be >= 1"


def to_dict(scen: S.Scenario) -> dict[str, Any]:
    """The scenario as plain data (for --json reports)."""
    out: dict[str, Any] = CONVERTER.unstructure(scen)
    return out


__all__ = ["ScenarioError", "bundled", "load", "loads", "parse_pfn_spec", "resolve"]
