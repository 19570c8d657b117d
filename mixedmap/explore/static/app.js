// mixedmap explorer: renders the JSON records of mixedmap.explore.api; computes nothing.
"use strict";
(function () {
  const OFFLINE = window.MIXEDMAP_OFFLINE || null;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  let ARCHES = [];

  function showError(msg) {
    const el = $("error");
    if (!msg) { el.hidden = true; el.textContent = ""; return; }
    el.hidden = false; el.textContent = msg;
  }

  async function call(method, url, body) {
    const opts = { method, headers: {} };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    const data = await r.json();
    if (!r.ok) { showError("error (" + (data.field || "?") + "): " + data.error); throw new Error(data.error); }
    showError("");
    return data;
  }

  // -- one entry: 64 bits in the arch's bit order (63 first), fields, bytes in memory --------
  function bitOwner(fields, width) {
    const own = new Array(width).fill(-1);
    fields.forEach((f, k) => { for (let b = f.shift; b < f.shift + f.width; b++) if (own[b] < 0) own[b] = k; });
    return own;
  }

  const f_top = (f) => f.shift + f.width - 1;

  function renderEntry(s, byteorder) {
    const width = s.width, v = BigInt(s.value), own = bitOwner(s.fields, width);
    let bits = '<div class="bits">';
    for (let b = width - 1; b >= 0; b--) {
      const on = (v >> BigInt(b)) & 1n;
      const k = own[b];
      const name = k >= 0 ? s.fields[k].name : "";
      // a field is named once per row of 32, at its highest bit there (as `mixedmap layout` does)
      const top = k >= 0 && (b === f_top(s.fields[k]) || b % 32 === 31);
      bits += '<div class="bit' + (on ? " on" : "") + (k >= 0 ? " field f" + (k % 9) : "") + '" data-bit="' + b + '" title="bit ' + b + (name ? " " + esc(name) : "") + '">' +
        '<span class="n">' + b + "</span>" + (on ? "1" : "0") + '<span class="fname">' + (top ? esc(name.slice(0, 5)) : k >= 0 ? "&mdash;" : "&nbsp;") + "</span></div>";
    }
    bits += "</div>";
    let legend = "<table><tr><th>field</th><th>bits</th><th>value</th><th>kind</th><th>meaning</th></tr>";
    s.fields.forEach((f, k) => {
      legend += '<tr data-field="' + esc(f.name) + '" class="' + (f.set ? "set" : "") + '"><td class="f' + (k % 9) + '">' + esc(f.name) + "</td><td>" + esc(f.bits) +
        "</td><td>" + esc(f.value) + "</td><td>" + esc(f.kind) + "</td><td>" + esc(f.doc) + "</td></tr>";
    });
    legend += "</table>";
    let bytes = "";
    if (s.bytes !== undefined) {
      const pa = BigInt(s.entry_pa);
      bytes = '<div class="bytes">bytes in memory (' + esc(byteorder) + "-endian), lowest address first: " +
        s.bytes.split(" ").map((x, i) => '<span class="byte"><small>+' + i + "</small>" + x + "</span>").join("") +
        ' <span class="dim">at 0x' + pa.toString(16) + "</span></div>";
    }
    return bits + bytes + legend;
  }

  function renderWalk(rec, caption) {
    let h = (caption ? '<p class="caption" id="walk-caption">' + esc(caption) + "</p>" : "") + '<p class="mono">' + esc(rec.arch + "/" + rec.mode) + " kernel " + esc(rec.kernel) + " &nbsp; " + esc(rec.root_name) + "=" + esc(rec.root) +
      " &nbsp; VA <b>" + esc(rec.va) + "</b></p>";
    h += '<table class="vasplit"><tr><th>level</th>' + rec.steps.map((s) => "<th>" + esc(s.level) + " (" + esc(s.hw_name) + ")</th>").join("") + "<th>offset</th></tr>";
    h += "<tr><td>VA bits</td>" + rec.steps.map((s) => "<td>" + esc(s.va_bits) + "</td>").join("") + "<td></td></tr>";
    h += '<tr><td>index</td>' + rec.steps.map((s) => '<td class="idx">' + s.index + "</td>").join("") + '<td class="idx">' + esc(rec.offset === null ? "-" : rec.offset) + "</td></tr></table>";
    rec.steps.forEach((s) => {
      h += '<div class="level" data-level="' + esc(s.level) + '"><h3>' + esc(s.level) + " (" + esc(s.hw_name) + ") table " + esc(s.table_pa) + " [" + s.index + "] entry @ " + esc(s.entry_pa) +
        ": <code>" + esc(s.value) + "</code> " + esc(s.kind) + (s.flags.length ? " &nbsp; " + esc(s.flags.join(" ")) : "") + "</h3>";
      h += renderEntry(s, rec.byteorder);
      if (s.helpers) h += '<p class="mono">' + Object.entries(s.helpers).map(([k, v]) => esc(k) + "=" + esc(v)).join(" &nbsp; ") + "</p>";
      if (s.next_table_pa) h += '<div class="arrow">&darr; next table at ' + esc(s.next_table_pa) + "</div>";
      h += "</div>";
    });
    h += rec.pa ? '<div class="arrow">&rarr; PA <span id="walk-pa" class="pa">' + esc(rec.pa) + "</span> (page size " + esc(rec.page_size) + ")</div>"
      : '<div class="arrow">&rarr; <span id="walk-pa" class="pa">not mapped</span></div>';
    $("walk-out").innerHTML = h;
  }

  // -- scenario stepping ------------------------------------------------------------------
  let RUN = null, AT = 0;
  const yn = (v) => (v === undefined || v === null ? '<td class="dim">-</td>' : '<td class="' + (v ? "yes" : "no") + '">' + (v ? "yes" : "no") + "</td>");

  function renderStep() {
    const st = RUN.steps[AT];
    const bad = st.outcome.outcome && st.outcome.outcome !== "ok";
    let h = '<div class="stepnav"><button id="step-prev" ' + (AT === 0 ? "disabled" : "") + '>&larr; prev</button><span>step <b id="step-index">' + (AT + 1) + "</b> / " + RUN.steps.length +
      '</span><button id="step-next" ' + (AT + 1 >= RUN.steps.length ? "disabled" : "") + ">next &rarr;</button>" +
      '<select id="step-select">' + RUN.steps.map((x, i) => '<option value="' + i + '"' + (i === AT ? " selected" : "") + ">" + (i + 1) + ": " + esc(x.label) + (x.skipped ? " (skipped)" : "") + "</option>").join("") + "</select></div>";
    h += '<p class="mono"><b id="step-label">' + esc(st.label) + "</b>" + (st.skipped ? ' <span class="dim">(skipped: its "when" does not hold here)</span>' : "") + "</p>";
    if (st.note) h += "<p>" + esc(st.note) + "</p>";
    if (!st.skipped) {
      h += '<p>outcome: <span id="step-outcome" class="' + (bad ? "outcome-bad" : "outcome-ok") + '">' + esc(st.outcome.outcome) + "</span> " +
        '<span class="mono wrap">' + Object.entries(st.outcome).filter(([k]) => k !== "outcome").map(([k, v]) => esc(k) + "=<b>" + esc(typeof v === "object" ? JSON.stringify(v) : v) + "</b>").join(" &nbsp; ") + "</span></p>";
      st.failures.forEach((f) => { h += '<p class="fail">expectation failed: ' + esc(f) + "</p>"; });
      if (st.rules.length) h += '<p class="dim">rules consulted: ' + esc(st.rules.join(", ")) + "</p>";
    }
    for (const [name, p] of Object.entries(st.processes)) {
      h += "<h3>process " + esc(name) + (p.alive ? "" : " (exited)") + ' &nbsp; <span class="mono">RSS file=<span data-rss-file="' + esc(name) + '">' + p.rss.file +
        '</span> anon=<span data-rss-anon="' + esc(name) + '">' + p.rss.anon + "</span></span></h3>";
      if (p.vmas.length) h += '<p class="mono dim">' + p.vmas.map(esc).join("<br>") + "</p>";
      h += "<table><tr><th>VA</th><th>PTE</th><th>present</th><th>special</th><th>writable</th><th>normal</th><th>pfn</th><th>refcount</th><th>mapcount</th></tr>";
      p.ptes.forEach((r) => {
        h += '<tr class="clickable" data-proc="' + esc(name) + '" data-va="' + esc(r.va) + '"><td>' + esc(r.va) + "</td><td>" + esc(r.pte) + "</td>" + yn(r.present) + yn(r.special) + yn(r.writable) + yn(r.normal) +
          "<td>" + esc(r.pfn || "-") + '</td><td class="refcount">' + esc(r.refcount ?? "-") + '</td><td class="mapcount">' + esc(r.mapcount ?? "-") + "</td></tr>";
      });
      if (!p.ptes.length) h += '<tr><td colspan="9" class="dim">no PTEs</td></tr>';
      h += "</table>";
    }
    const pages = Object.entries(st.pages);
    if (pages.length) {
      h += '<h3>struct pages</h3><table id="pages"><tr><th>pfn</th><th>refcount</th><th>mapcount</th></tr>' +
        pages.map(([pfn, c]) => '<tr data-pfn="' + esc(pfn) + '"><td>' + esc(pfn) + '</td><td class="refcount">' + esc(c.refcount ?? "no struct page") + '</td><td class="mapcount">' + esc(c.mapcount ?? "-") + "</td></tr>").join("") + "</table>";
    }
    h += "<h3>trace events of this step</h3>";
    h += st.events.length ? '<table id="events"><tr><th>event</th><th>function</th><th>addr</th><th>pfn</th><th>PTE before</th><th>PTE after</th></tr>' +
      st.events.map((e) => "<tr><td>" + esc(e.event) + "</td><td>" + esc(e.func) + "</td><td>" + esc(e.addr) + "</td><td>" + esc(e.pfn ?? "") + "</td><td>" + esc(e.pte_before ?? "") + "</td><td>" + esc(e.pte_after ?? "") + "</td></tr>").join("") + "</table>"
      : '<p class="dim">none</p>';
    $("stepper").innerHTML = h;
    $("step-prev").onclick = () => { AT--; renderStep(); };
    $("step-next").onclick = () => { AT++; renderStep(); };
    $("step-select").onchange = () => { AT = Number($("step-select").value); renderStep(); };
    document.querySelectorAll("#stepper tr.clickable").forEach((tr) => {
      tr.onclick = () => { const w = st.processes[tr.dataset.proc].walks[tr.dataset.va];
        if (w) renderWalk(w, RUN.scenario + ", after step " + (AT + 1) + " (" + st.label + "), process " + tr.dataset.proc); };
    });
  }

  function showRun(run) {
    RUN = run; AT = 0;
    const head = '<p><b>' + esc(run.scenario) + "</b> on " + esc(run.arch) + "/" + esc(run.kernel) + ": " + esc(run.description) + "</p>";
    $("stepper").innerHTML = head;
    if (run.steps.length) renderStep();
  }

  function showDiff(d) {
    let h = "<p><b>" + esc(d.scenario) + "</b> under " + esc(d.kernels.join(", ")) + (d.identical ? ": <b>the same under every kernel</b>" : "") + "</p>";
    d.arches.forEach((a) => {
      Object.entries(a.not_run).forEach(([k, why]) => { h += '<p class="dim">' + esc(a.arch + "/" + k) + " not run: " + esc(why) + "</p>"; });
      if (!a.differences.length) { h += "<p>" + esc(a.arch) + ": no differences</p>"; return; }
      h += '<table id="diff-table"><tr><th>arch</th><th>step</th><th>key</th>' + a.kernels.map((k) => "<th>" + esc(k) + "</th>").join("") + "<th>cause</th></tr>";
      a.differences.forEach((x) => {
        const cause = x.causes.length ? x.causes.map((c) => esc(c.name + ": " + c.function + " (" + c.file + ", since " + c.since + ") holds in " + c.holds_in.join(", "))).join("<br>")
          : (x.follows ? '<span class="dim">follows from an earlier difference</span>' : "");
        h += "<tr><td>" + esc(x.arch) + '</td><td class="mono">' + (x.step >= 0 ? x.step + ": " : "") + esc(x.label) + "</td><td>" + esc(x.key) + "</td>" +
          a.kernels.map((k) => "<td>" + esc(JSON.stringify(x.values[k])) + "</td>").join("") + "<td>" + cause + "</td></tr>";
      });
      h += "</table>";
    });
    $("diff-out").innerHTML = h;
  }

  // -- the live machine -------------------------------------------------------------------
  function fillSelect(sel, items, chosen) {
    sel.innerHTML = items.map((x) => '<option value="' + esc(x) + '"' + (x === chosen ? " selected" : "") + ">" + esc(x) + "</option>").join("");
  }

  function refreshChoices(state) {
    const a = ARCHES.find((x) => x.name === $("arch").value) || ARCHES[0];
    const kernel = state && state.arch === a.name ? state.kernel : ($("kernel").value && a.profiles.includes($("kernel").value) ? $("kernel").value : a.profiles[a.profiles.length - 1]);
    fillSelect($("kernel"), a.profiles, kernel);
    fillSelect($("mode"), a.modes[$("kernel").value] || [], state && state.arch === a.name ? state.mode : undefined);
  }

  function showState(s) {
    $("machine-line").textContent = s.arch + "/" + s.mode + " kernel " + s.kernel + "  " + s.root_name + "=" + s.root + "  " + s.byteorder + "-endian, " + s.va_bits + "-bit VA, " + s.pa_bits + "-bit PA";
    $("mapped").innerHTML = s.mapped.map((m) => '<li class="mono">' + esc(m.va) + " &rarr; pfn " + esc(m.pfn) + " " + esc(m.prot) + (m.special ? " special" : "") + "</li>").join("");
  }

  async function live() {
    const info = await call("GET", "/api/arches");
    ARCHES = info.arches;
    const state = await call("GET", "/api/state");
    fillSelect($("arch"), ARCHES.map((a) => a.name), state.arch);
    refreshChoices(state);
    showState(state);
    fillSelect($("scenario"), Object.keys(info.scenarios), "s6-private-pfnmap-remap");
    $("arch").onchange = () => refreshChoices(null);
    $("kernel").onchange = () => fillSelect($("mode"), (ARCHES.find((x) => x.name === $("arch").value).modes[$("kernel").value]) || []);
    $("configure-form").onsubmit = async (e) => { e.preventDefault(); try { showState(await call("POST", "/api/configure", { arch: $("arch").value, kernel: $("kernel").value, mode: $("mode").value })); } catch (_) {} };
    $("map-form").onsubmit = async (e) => {
      e.preventDefault();
      try { showState(await call("POST", "/api/map", { va: $("map-va").value, pfn: $("map-pfn").value, prot: $("map-prot").value, special: $("map-special").checked })); } catch (_) {}
    };
    $("walk-form").onsubmit = async (e) => { e.preventDefault(); try { renderWalk(await call("GET", "/api/walk?va=" + encodeURIComponent($("walk-va").value)), "the machine above"); } catch (_) {} };
    const scen = () => ({ name: $("scenario").value, text: $("scenario-text").value, arch: $("arch").value, kernel: $("kernel").value });
    $("scenario-form").onsubmit = async (e) => { e.preventDefault(); $("stepper").innerHTML = '<p class="dim">running...</p>'; try { showRun(await call("POST", "/api/scenario/run", scen())); } catch (_) { $("stepper").innerHTML = ""; } };
    $("scenario-diff").onclick = async () => { $("diff-out").innerHTML = '<p class="dim">running every kernel...</p>'; try { showDiff(await call("POST", "/api/scenario/diff", scen())); } catch (_) { $("diff-out").innerHTML = ""; } };
  }

  function offline() {
    $("machine-panel").hidden = true; $("scenario-form").hidden = true;
    document.querySelector("main").classList.add("offline");
    $("machine-line").textContent = OFFLINE.run.arch + " kernel " + OFFLINE.run.kernel + " (saved run; click a PTE row to see its walk)";
    $("walk-out").innerHTML = '<p class="dim">click a PTE row of a step to see its walk</p>';
    showRun(OFFLINE.run);
    if (OFFLINE.diff) showDiff(OFFLINE.diff);
  }

  window.mixedmapExplorer = { renderWalk, showRun, showDiff };
  if (OFFLINE) offline(); else live().catch((e) => showError(String(e)));
})();
