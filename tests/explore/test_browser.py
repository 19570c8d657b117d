"""The explorer in a real headless Chromium: what the page shows, checked against the model.

Needs Debian's Chromium (``apt-get install -y chromium``) and the PyPI package ``playwright``
(``pip install playwright``; its own browser download is not used). Without them every test
here skips and says how to install them.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed: apt-get install -y chromium (the browser tests use /usr/bin/chromium)",
        allow_module_level=True,
    )
playwright_sync = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install playwright (no `playwright install` needed)",
)
uvicorn = pytest.importorskip(
    "uvicorn", reason="the explorer needs its extra: pip install 'mixedmap[explore]'"
)

import attrs  # noqa: E402

from mixedmap.explore.app import create_app  # noqa: E402
from mixedmap.explore.html import write_run_html  # noqa: E402
from mixedmap.machine import Machine  # noqa: E402
from mixedmap.plugin.registry import default_registry  # noqa: E402
from mixedmap.scenario.load import load  # noqa: E402
from mixedmap.scenario.run import ScenarioRun  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
S6 = "s6-private-pfnmap-remap"
pytestmark = pytest.mark.skipif(
    "x86_64" not in default_registry().names, reason="needs the x86_64 plugin: pip install ./plugins/x86"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app("x86_64", "2.6.27"), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the explorer did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield ctx
        ctx.close()


def _model_s6_after_cow() -> tuple[int, int, int]:
    """What the model says at s6's inspect after the COW write: page 2's VA, its refcount
    and its PA (a run of the steps up to that inspect, straight through ScenarioRun)."""
    _, scen = load(S6)
    idx = next(i for i, st in enumerate(scen.steps) if st.OP == "write")
    run = ScenarioRun(attrs.evolve(scen, steps=scen.steps[: idx + 2]), "x86_64", "2.6.27")
    run.setup()
    run.run()
    va = run.maps[("a", "mem")] + 2 * run.ps
    leaf = run.procs["a"].pt.lookup(va)
    assert leaf is not None
    info = run.m.page(leaf.pfn)
    assert info is not None
    return va, info.refcount, leaf.pa


def test_map_walk_and_step_in_the_live_page(server: str, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15000)
    page.goto(server)
    page.wait_for_function("document.getElementById('machine-line').textContent.includes('x86_64')")
    # map a special page and walk an address inside it
    page.fill("#map-va", "0x400000")
    page.fill("#map-pfn", "0x1234")
    page.check("#map-special")
    page.click("#map")
    page.wait_for_selector("#mapped li")
    page.fill("#walk-va", "0x400008")
    page.click("#walk")
    page.wait_for_selector("#walk-pa")
    m = Machine("x86_64", "2.6.27", ram="1G")
    pt = m.new_pagetable()
    pt.map(0x400000, pfn=0x1234, prot="rw", special=True)
    leaf = pt.lookup(0x400008)
    assert leaf is not None
    assert page.inner_text("#walk-pa") == f"{leaf.pa:#x}"
    pte = page.locator('.level[data-level="pte"]')
    special_bit = (m.fmt.special_mask or 0).bit_length() - 1
    assert "on" in (pte.locator(f'.bit[data-bit="{special_bit}"]').get_attribute("class") or "")
    assert pte.locator('.bit[data-bit="0"]').get_attribute("class") and "on" in (
        pte.locator('.bit[data-bit="0"]').get_attribute("class") or ""
    )  # present
    shown = [b.inner_text().split()[-1] for b in pte.locator(".bytes span.byte").all()]
    assert shown == leaf.value.to_bytes(8, m.fmt.byteorder).hex(" ").split()  # little-endian: low byte first
    assert pte.locator("tr.set", has_text="special").count() == 1 or special_bit < 0
    page.screenshot(path=str(tmp_path / "walk.png"), full_page=True)

    # bad input: a clear message, the machine unchanged
    page.fill("#map-pfn", hex(1 << 60))
    page.click("#map")
    page.wait_for_selector("#error:not([hidden])")
    assert "pfn" in page.inner_text("#error")
    assert page.locator("#mapped li").count() == 1
    page.fill("#walk-va", "0x800000000000")
    page.click("#walk")
    page.wait_for_function(
        "document.getElementById('error').textContent.includes('outside the address space')"
    )
    page.fill("#walk-va", "0x400008")
    page.click("#walk")
    page.wait_for_selector("#error[hidden]", state="attached")
    assert page.inner_text("#walk-pa") == f"{leaf.pa:#x}"

    # a malformed scenario: the file's line and key in the message, nothing else changes
    page.click("summary")
    page.fill("#scenario-text", "[scenario]\nname = 1\n")
    page.click("#scenario-load")
    page.wait_for_function("document.getElementById('error').textContent.includes('scenario.name')")
    assert "<uploaded>:2" in page.inner_text("#error")
    page.fill("#scenario-text", "")

    # step s6 to the inspect after the COW write
    page.select_option("#scenario", S6)
    page.click("#scenario-load")
    page.wait_for_selector("#step-label")
    while not page.inner_text("#step-label").startswith("write"):
        page.click("#step-next")
    page.click("#step-next")
    va, refcount, pa = _model_s6_after_cow()
    row = page.locator(f'#stepper tr[data-proc="a"][data-va="{va:#x}"]')
    assert row.locator(".refcount").inner_text() == str(refcount) == "1"
    assert page.inner_text("#step-outcome") == "ok"
    row.click()  # its walk
    assert page.inner_text("#walk-pa") == f"{pa:#x}"
    page.click("#scenario-diff")
    page.wait_for_selector("#diff-table")
    assert page.locator("#diff-table td", has_text="special").count() >= 1
    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot), full_page=True)

    # another arch: s390x stores its entries big-endian, most significant byte first
    if "s390x" in default_registry().names:
        page.select_option("#arch", "s390x")
        page.click("#configure")
        page.wait_for_function("document.getElementById('machine-line').textContent.startsWith('s390x')")
        page.fill("#map-va", "0x10000")
        page.fill("#map-pfn", "0x1234")
        page.check("#map-special")
        page.click("#map")
        page.wait_for_selector("#mapped li")
        page.fill("#walk-va", "0x10008")
        page.click("#walk")
        page.wait_for_function("document.getElementById('walk-out').textContent.includes('big-endian')")
        s390 = Machine("s390x", ram="1G")
        spt = s390.new_pagetable()
        spt.map(0x10000, pfn=0x1234, prot="rw", special=True)
        sleaf = spt.lookup(0x10008)
        assert sleaf is not None
        assert page.inner_text("#walk-pa") == f"{sleaf.pa:#x}"
        last = page.locator(".level").last
        shown = [b.inner_text().split()[-1] for b in last.locator(".bytes span.byte").all()]
        assert shown == sleaf.value.to_bytes(8, "big").hex(" ").split()
    assert not errors


def test_html_file_from_disk(browser: Any, tmp_path: Path) -> None:
    out = write_run_html(S6, "x86_64", "2.6.27", tmp_path / "s6.html")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15000)
    page.goto(out.as_uri())
    page.wait_for_selector("#step-label")
    assert not page.is_visible("#map-form")  # a saved run has no live machine to map into
    while not page.inner_text("#step-label").startswith("write"):
        page.click("#step-next")
    page.click("#step-next")
    va, refcount, pa = _model_s6_after_cow()
    row = page.locator(f'#stepper tr[data-proc="a"][data-va="{va:#x}"]')
    assert row.locator(".refcount").inner_text() == str(refcount)
    row.click()
    assert page.inner_text("#walk-pa") == f"{pa:#x}"
    assert page.locator("#diff-table").count() == 1
    assert all(u.startswith("file:") for u in requests), requests
    page.screenshot(path=str(tmp_path / "offline.png"), full_page=True)
    assert not errors
