"""Scenario files: every malformed input is refused with file, line and key, before anything runs."""

from __future__ import annotations

import re

import pytest

from mixedmap.scenario import schema as S
from mixedmap.scenario.load import ScenarioError, bundled, key_lines, load, loads, parse_pfn_spec

GOOD = """\
[scenario]
name = "t"
processes = ["a"]

[[devices]]
name = "xip0"
start = "1G"

[[files]]
device = "xip0"
name = "f"
pages = 4

[[steps]]
op = "mmap"
process = "a"
name = "m"
file = "xip0/f"
pages = 4

[[steps]]
op = "read"
process = "a"
map = "m"
page = 3
when = { special = true }
"""


def test_good_file_structures_into_typed_steps() -> None:
    scen = loads(GOOD, "t.toml")
    assert [type(s) for s in scen.steps] == [S.Mmap, S.Read]
    assert scen.steps[1].when == S.When(special=True)
    assert scen.devices[0].driver == "range"


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("page = 3", 'page = "3"', 25, "steps[1].page", "expected int"),
        ("page = 3", "page = 4", 25, "steps[1].page", "beyond 'm'"),
        ('op = "read"', 'op = "raed"', 22, "steps[1].op", "unknown op 'raed'"),
        ("pages = 4\n\n[[steps]]", "pages = 4\nbogus = 1\n\n[[steps]]", 13, "files[0].bogus", "unknown key"),
        ('start = "1G"', 'strat = "1G"', 7, "devices[0].strat", "unknown key"),
        ("special = true", "special = 1", 26, "steps[1].when.special", "expected bool"),
        ('map = "m"', 'map = "n"', 24, "steps[1].map", "no mapping 'n'"),
        ('process = "a"\nname = "m"', 'process = "b"\nname = "m"', 16, "steps[0].process", "no process 'b'"),
        ('file = "xip0/f"', 'file = "xip0/g"', 18, "steps[0].file", "no file"),
        ('device = "xip0"', 'device = "xip1"', 10, "files[0].device", "no device"),
        ('name = "t"', "name = ", 2, "", "TOML syntax"),
        ('process = "a"\nmap = "m"', 'map = "m"', 21, "steps[1].process", "required"),
    ],
)
def test_errors_name_file_line_and_key(old: str, new: str, line: int, key: str, words: str) -> None:
    assert old in GOOD
    with pytest.raises(ScenarioError) as info:
        loads(GOOD.replace(old, new, 1), "bad.toml")
    e = info.value
    assert (e.file, e.line, e.key) == ("bad.toml", line, key), str(e)
    assert words in str(e) and str(e).startswith(f"bad.toml:{line}: ")


def test_steps_xor_guests() -> None:
    with pytest.raises(ScenarioError, match="either"):
        loads(GOOD + "\n[guests]\ncount = 3\n", "t.toml")
    with pytest.raises(ScenarioError, match="either"):
        loads('[scenario]\nname = "x"\n', "t.toml")


def test_key_lines_indexes_arrays_of_tables_and_subtables() -> None:
    text = "[a]\nx = 1\n[[s]]\nk = 1\n[s.w]\nz = 2\n[[s]]\nk = 2\n"
    lines = key_lines(text)
    assert lines[("a", "x")] == 2
    assert lines[("s", 0, "k")] == 4
    assert lines[("s", 0, "w", "z")] == 6
    assert lines[("s", 1, "k")] == 8


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        (7, ("pfn", "", 7)),
        ("ram+0x800", ("ram", "", 0x800)),
        ("device:bar+3", ("device", "bar", 3)),
        ("file:xip0/f+2", ("file", "xip0/f", 2)),
        ("pte:m", ("pte", "m", 0)),
    ],
)
def test_pfn_specs(spec: str | int, want: tuple[str, str, int]) -> None:
    assert parse_pfn_spec(spec) == want


@pytest.mark.parametrize("spec", ["dev:x+1", "device:+1", "ram-3", "12"])
def test_bad_pfn_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="pfn"):
        parse_pfn_spec(spec)


def test_bundled_scenarios_all_load_and_are_listed() -> None:
    names = bundled()
    for want in ("lockless-gup", "guests", "s1-private-xip-no-struct-page", "s12-truncate-mapped-xip"):
        assert names.get(want)
    for name in names:
        filename, scen = load(name)
        assert filename == f"<bundled>/{name}.toml" and scen.scenario.name == name


def test_unknown_name_lists_bundled() -> None:
    with pytest.raises(ScenarioError, match="lockless-gup"):
        load("no-such-scenario")


def _key_value_lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, m.group(1))
        for n, line in enumerate(text.splitlines(), 1)
        if (m := re.match(r"^([a-z_]+) = ", line)) and not text.splitlines()[n - 2].startswith("[scenario")
    ]


@pytest.mark.parametrize("name", sorted(bundled()))
def test_every_key_of_every_bundled_file_is_located(name: str) -> None:
    """Corrupt each key's value in turn: the error must name exactly that line and key."""
    from mixedmap.scenario.load import resolve

    _, text = resolve(name)
    lines = text.splitlines()
    checked = 0
    for n, key in _key_value_lines(text):
        if key in ("name", "description", "reference") and any(
            lines[i].startswith("[scenario]") for i in range(max(0, n - 6), n)
        ):
            continue  # free text in the header
        bad = lines.copy()
        bad[n - 1] = f"{key} = [[]]"
        with pytest.raises(ScenarioError) as info:
            loads("\n".join(bad) + "\n", f"{name}.toml")
        assert info.value.line == n, f"{name}:{n} {key}: error says line {info.value.line}: {info.value}"
        last = re.sub(r"(\[\d+\])+$", "", info.value.key).rsplit(".", 1)[-1]
        assert last == key, f"{name}:{n}: key {info.value.key!r} for {key!r}"
        checked += 1
    assert checked >= 3


def test_key_lines_keep_the_dots_of_a_quoted_key() -> None:
    text = '[[devices]]\nname = "d"\n\n[devices.kernel."6.18"]\nmemmap = true\n'
    lines = key_lines(text)
    assert lines[("devices", 0, "kernel", "6.18")] == 4
    assert lines[("devices", 0, "kernel", "6.18", "memmap")] == 5
