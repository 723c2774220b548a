// Leither dashboard page. Plain JS, no framework, nothing fetched from elsewhere. Every call to
// /api carries the token (from the link `leither dashboard` printed; kept for this tab only).
// Text from nodes is put in the page with textContent only: a node's name is untrusted input.
"use strict";

const TOKEN_KEY = "leither-dashboard-token";
const JOB_POLL_MS = 500;
const PAIR_POLL_MS = 1000;
const LOG_POLL_MS = 2000;
const LOG_KEPT = 400;  // lines of a node's log kept on the page (the node's ring holds fewer)
const state = { fleet: [], selected: null, node: null, pollMs: 3000, org: null, jobs: [],
                polledAt: null, pairWatchEnded: 0,
                log: { id: null, after: 0, lines: [], note: "", busy: false } };

// ---- small helpers ---------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "—";
}

function shortId(id) { return id ? id.slice(0, 8) : "—"; }

function nameOf(id) {
  if (!id) return "—";
  const row = state.fleet.find((n) => n.id === id);
  return row && row.name ? row.name : shortId(id);
}

// replaceChildren that skips the null of a `cond ? el(...) : null`.
function put(box, ...children) {
  box.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// How a job names a node on its command line: its name where that is unique in the fleet (as
// a user types it; a simulated board's claim token is found by name), else an ID prefix.
function ref(id) {
  const row = state.fleet.find((n) => n.id === id);
  if (row && row.name && state.fleet.filter((n) => n.name === row.name).length === 1 &&
      /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(row.name)) return row.name;
  return id.slice(0, 12);
}

function pill(text, kind) { return el("span", { class: `pill ${kind || ""}` }, text); }

// ---- the API -----------------------------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function showGate(why) {
  $("main").hidden = true;
  $("token-gate").hidden = false;
  if (why) $("gate-why").textContent = why;
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers["X-Leither-Token"] = token();
  if (opts.json !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const response = await fetch(path, opts);
  if (response.status === 401) {
    showGate("The token is missing or wrong: open the link `leither dashboard` printed.");
    throw new Error("token refused");
  }
  if (opts.raw) {
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    return response;
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// A write: start the job, follow it to its end, show it in Activity; the job's view is returned.
async function runJob(params, button) {
  const label = button ? button.textContent : null;
  if (button) { button.disabled = true; button.textContent = label + "…"; }
  try {
    let job = await api("/api/jobs", { json: params });
    renderJob(job);
    while (job.state === "running") {
      await new Promise((r) => setTimeout(r, JOB_POLL_MS));
      job = await api(`/api/jobs/${job.id}`);
    }
    renderJob(job);
    refreshFleet();
    return job;
  } catch (err) {
    renderJob({ id: "x" + Date.now(), command: params.action, state: "failed",
                error: err.message, started: Date.now() / 1000 });
    return { state: "failed", error: err.message };
  } finally {
    if (button) { button.disabled = false; button.textContent = label; }
  }
}

function renderJob(job) {
  const list = $("jobs");
  $("jobs-empty").hidden = true;
  let item = list.querySelector(`[data-job="${job.id}"]`);
  const badge = job.state === "running" ? pill("running", "warn")
    : job.state === "done" ? pill("done", "ok") : pill("failed", "bad");
  let detail = "";
  if (job.state === "failed") detail = job.error || "failed";
  else if (job.state === "done") detail = summarize(job);
  const body = el("div", {}, el("div", { class: "what" }, "$ " + job.command),
    detail ? el("div", { class: "detail" + (job.state === "failed" ? " bad" : "") }, detail) : null);
  const fresh = el("li", { "data-job": job.id, "data-state": job.state }, badge, body);
  if (item) item.replaceWith(fresh); else list.prepend(fresh);
}

function summarize(job) {
  const r = job.result;
  if (!r || typeof r !== "object") return typeof r === "string" ? r.trim() : "";
  switch (job.action) {
    case "claim": return `claimed ${shortId(r.node)}: you are its owner`;
    case "pair": return `pairing window open (${r.window_left} s)`;
    case "backup_now": return `backed up: ${bytes(r.used_on_partner)} on the partner, ` +
      `${bytes(r.pending)} pending`;
    case "audit": return `${r.results.filter((x) => x.ok).length} of ${r.results.length} ` +
      `blocks passed`;
    case "restore": return `restored ${r.versions} versions of ${r.mimei} MiMei ` +
      `(${bytes(r.bytes)}) onto ${r.onto} in ${r.seconds} s`;
    case "mm_backup": return `version ${r.n}: ${bytes(r.size)}`;
    default: return "";
  }
}

async function saveDownload(path, fallbackName) {
  const response = await api(path, { raw: true });
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: match ? match[1] : fallbackName });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- the fleet -------------------------------------------------------------------------------

async function refreshFleet() {
  let data;
  try {
    data = await api("/api/fleet");
  } catch (err) {
    $("poll-state").textContent = "dashboard unreachable: " + err.message;
    return;
  }
  state.fleet = data.nodes;
  state.polledAt = data.polled_at;
  state.pollMs = Math.max(1000, (data.poll_s || 3) * 1000);
  $("poll-state").textContent = data.error ? "inventory: " + data.error
    : data.polled_at ? `fleet polled ${ago(data.polled_at)}` : "polling the fleet…";
  renderFleet();
  renderPickers();
  peekPairing();
  if (state.selected) refreshBackupPlot();
}

function backupLag(n) {
  const b = n.backup;
  if (!b) return n.role === "owner" ? "—" : "";
  if (!n.partner) return pill("no partner");
  const last = b.last_ok ? "last " + ago(b.last_ok / 1000) : "never";
  if (b.state === "error") return pill(`error · ${last}`, "bad");
  if (b.pending) return pill(`${bytes(b.pending)} pending · ${last}`, "warn");
  return pill(`up to date · ${last}`, "ok");
}

function renderFleet() {
  const body = $("fleet").tBodies[0];
  body.replaceChildren();
  $("fleet-empty").hidden = state.fleet.length > 0;
  for (const n of state.fleet) {
    const online = n.replaced_ms !== null && n.replaced_ms !== undefined
      ? pill("replaced by a restore", "bad")
      : n.wrong_node ? pill("WRONG NODE at its address", "bad")
      : el("span", {}, el("span", { class: "dot" + (n.online ? " on" : "") }),
        n.online ? `online · up ${duration(n.uptime_s)}`
          : n.last_seen ? `offline · seen ${ago(n.last_seen)}` : "never seen");
    const actions = el("td", { class: "row-actions" });
    if (n.online && n.claimed === false) {
      actions.append(el("button", { class: "small", "data-action": "claim",
        onclick: (e) => { e.stopPropagation(); claim(n, e.target); } }, "Claim"));
    }
    const row = el("tr", { "data-id": n.id, "data-name": n.name,
        class: state.selected === n.id ? "selected" : null, onclick: () => select(n.id) },
      el("td", {}, n.name || "?"), el("td", { class: "mono", title: n.id }, shortId(n.id)),
      el("td", { class: "state", title: n.error || "" }, online),
      el("td", {}, n.board || "—"), el("td", {}, n.fw || "—"),
      el("td", { class: "role" }, n.role === "owner" ? pill("owner", "ok")
        : n.claimed === false ? pill("unclaimed", "warn") : n.role || "—"),
      el("td", { class: "partner" }, n.partner ? nameOf(n.partner) : "—"),
      el("td", { class: "lag" }, backupLag(n)),
      el("td", { class: "num" }, bytes(n.free_bytes)),
      el("td", { class: "num" }, bytes(n.heap_bytes)), actions);
    body.append(row);
  }
}

async function claim(n, button) {
  const params = { action: "claim", node: ref(n.id) };
  const input = $("claim-token");
  if (input && input.value.trim() && state.selected === n.id) params.claim_token = input.value.trim();
  const job = await runJob(params, button);
  if (job.state === "done" && state.selected === n.id) loadNode();
}

// ---- one node: facts, MiMei, versions ----------------------------------------------------------

function select(id) {
  state.selected = id;
  state.node = null;
  renderFleet();
  loadNode();
}

function selectedRow() { return state.fleet.find((n) => n.id === state.selected); }

async function loadNode() {
  const n = selectedRow();
  if (!n) return;
  $("node-title").textContent = n.name || shortId(n.id);
  $("backup-title").textContent = n.name || shortId(n.id);
  const body = $("node-body");
  const facts = el("dl", { class: "facts" },
    el("dt", {}, "ID"), el("dd", { class: "mono" }, n.id),
    el("dt", {}, "address"), el("dd", { class: "mono" }, n.address),
    el("dt", {}, "board / firmware"), el("dd", {}, `${n.board || "—"} / ${n.fw || "—"}`),
    el("dt", {}, "free storage / heap"),
    el("dd", {}, `${bytes(n.free_bytes)} / ${bytes(n.heap_bytes)}`));
  if (state.log.id !== n.id) {
    state.log = { id: n.id, after: 0, lines: [], note: "", busy: state.log.busy };
  }
  if (n.role !== "owner" && n.online) {
    body.replaceChildren(facts, el("p", {}, "This node is not yours yet."),
      el("form", { class: "row claim-form", onsubmit: (e) => {
        e.preventDefault(); claim(n, e.target.querySelector("button")); } },
      el("input", { id: "claim-token", placeholder: "claim token (simulated boards: empty)",
        size: 34, autocomplete: "off" }), el("button", { type: "submit" }, "Claim")));
    renderBackup(null);
    return;
  }
  body.replaceChildren(facts, el("p", { class: "empty" }, "loading MiMei…"));
  let data;
  try {
    data = await api(`/api/nodes/${encodeURIComponent(n.id)}`);
  } catch (err) {
    body.replaceChildren(facts, el("p", { class: "verdict bad" }, err.message), manageRow(n));
    renderBackup(null);
    return;
  }
  if (state.selected !== n.id) return;
  state.node = data;
  const rows = data.mimei.map((m) => el("tr", { "data-mid": m.mid },
    el("td", { class: "mono", title: m.mid }, m.mid.slice(0, 10) + "…"), el("td", {}, m.type),
    el("td", {}, m.app + (m.ext ? "." + m.ext : "")), el("td", { class: "num" }, bytes(m.size)),
    el("td", { class: "num" }, m.versions),
    el("td", {}, el("button", { class: "small ghost", onclick: (e) => showVersions(m, e.target) },
      "Versions"), " ",
    data.failover ? null : el("button", { class: "small ghost", "data-action": "mm-backup",
      title: "leither mm backup", onclick: (e) => newVersion(m, e.target) }, "New version"))));
  const table = rows.length ? el("div", { class: "table-wrap" }, el("table", { id: "mimei" },
    el("thead", {}, el("tr", {}, el("th", {}, "MiMei"), el("th", {}, "type"),
      el("th", {}, "app"), el("th", { class: "num" }, "size"),
      el("th", { class: "num" }, "versions"), el("th", {}, ""))), el("tbody", {}, rows)))
    : el("p", { class: "empty" }, "No MiMei on this node yet (leither mm create).");
  put(body, facts,
    data.failover ? el("p", { class: "verdict" },
      "Offline: its backed-up versions are read through its partner.") : null,
    el("h3", {}, "MiMei"), table, el("div", { id: "versions" }),
    data.failover ? null : [el("h3", {}, "Log"), el("pre", { id: "log", class: "log" })],
    manageRow(n));
  renderLog();
  if (!state.log.after) fetchLog();  // a node just picked: its log at once, not at the next poll
  renderBackup(data.backup);
  if (!data.failover) loadReceipts();
}

// Rename (here and on the node) and forget (drop from this host's inventory).
function manageRow(n) {
  const input = el("input", { id: "rename-name", placeholder: "new name", size: 14,
    autocomplete: "off", "aria-label": "new name" });
  const forget = el("button", { class: "ghost", id: "forget", type: "button",
    onclick: async (e) => {
      if (e.target.dataset.armed !== "1") {  // a second click confirms (no modal dialogs)
        e.target.dataset.armed = "1";
        e.target.textContent = "Really forget?";
        return;
      }
      const job = await runJob({ action: "forget", node: n.id }, e.target);
      if (job.state === "done") { state.selected = null; refreshFleet(); }
    } }, "Forget");
  return el("form", { class: "row manage", onsubmit: async (e) => {
    e.preventDefault();
    const job = await runJob({ action: "rename", node: ref(n.id), name: input.value.trim() },
      e.target.querySelector("button[type=submit]"));
    if (job.state === "done") { await refreshFleet(); loadNode(); }
  } }, input, el("button", { type: "submit", class: "ghost" }, "Rename"), forget);
}

function renderLog() {
  const box = $("log");
  if (!box) return;
  const stamp = (ms) => new Date(ms).toLocaleTimeString();
  box.textContent = (state.log.note ? state.log.note + "\n" : "") +
    state.log.lines.map(([, ms, text]) => `${stamp(ms)}  ${text}`).join("\n");
  box.scrollTop = box.scrollHeight;
}

// Follow the selected node's log, like `leither logs -f`.
async function followLog() {
  await fetchLog();
  setTimeout(followLog, LOG_POLL_MS);
}

async function fetchLog() {
  if (state.log.busy) return;  // one request at a time: two would add the same lines twice
  state.log.busy = true;
  try { await fetchLogOnce(); } finally { state.log.busy = false; }
}

async function fetchLogOnce() {
  const id = state.selected;
  const n = selectedRow();
  if (id && n && n.online && n.role === "owner" && $("log")) {
    try {
      const got = await api(`/api/nodes/${encodeURIComponent(id)}/logs?after=` +
        `${state.log.after}&tail=100`);
      if (state.log.id === id) {
        if (got.next < state.log.after) state.log.after = 0;  // the node restarted
        else {
          if (got.dropped && state.log.after) state.log.lines.push([0, Date.now(),
            `-- ${got.dropped} line(s) no longer held by the node --`]);
          state.log.lines.push(...got.lines);
          state.log.lines = state.log.lines.slice(-LOG_KEPT);
          state.log.after = got.next;
          state.log.note = "";
        }
        if (got.lines.length || got.dropped) renderLog();
      }
    } catch (err) {
      state.log.note = `-- ${err.message} --`;
      renderLog();
    }
  }
}

async function showVersions(m, button) {
  const box = $("versions");
  box.replaceChildren(el("p", { class: "empty" }, "loading versions…"));
  let data;
  try {
    data = await api(`/api/nodes/${encodeURIComponent(state.selected)}/mimei/${m.mid}`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "verdict bad" }, err.message));
    return;
  }
  const dl = (version, label) => el("button", { class: "small ghost", "data-version": version,
    onclick: () => saveDownload(`/api/nodes/${encodeURIComponent(state.selected)}/mimei/` +
      `${m.mid}/content?version=${version}`, `${m.mid}-${version}`) }, label);
  const rows = data.versions.map((v) => el("tr", { "data-n": v.n },
    el("td", {}, `v${v.n}`), el("td", { class: "mono" }, v.hash.slice(0, 16)),
    el("td", { class: "num" }, bytes(v.size)), el("td", {}, when(v.time)),
    el("td", {}, [v.n === data.last ? pill("last") : null, " ",
      v.n === data.release ? pill("release", "ok") : null]),
    el("td", {}, dl(v.n, "Download"))));
  box.replaceChildren(el("h3", {}, `Versions of ${data.app}${data.ext ? "." + data.ext : ""}`),
    rows.length ? el("table", { id: "versions-table" }, el("tbody", {}, rows))
      : el("p", { class: "empty" }, "No versions yet: New version makes one."),
    el("p", {}, dl("cur", `Download current (${bytes(data.cur_size)})`)));
}

async function newVersion(m, button) {
  const job = await runJob({ action: "mm_backup", node: ref(state.selected), mid: m.mid },
    button);
  if (job.state === "done") { await loadNode(); showVersions(m); }
}

// ---- backup: status, plot, audits, receipts ----------------------------------------------------

function renderBackup(b) {
  const box = $("backup-summary");
  const owned = !!b;
  for (const id of ["backup-now", "audit", "cut-receipt"]) $(id).disabled = !owned;
  if (!b) {
    box.replaceChildren(el("p", { class: "empty" }, "Pick a node you own."));
    $("receipts").replaceChildren(el("p", { class: "empty" }, "—"));
    drawPlot([]);
    return;
  }
  const kind = b.state === "error" ? "bad" : b.pending ? "warn" : "ok";
  put(box, el("dl", { class: "facts", id: "backup-facts" },
    el("dt", {}, "partner"), el("dd", { class: "partner" },
      b.partner ? nameOf(b.partner) : "none: pair it with another node"),
    el("dt", {}, "state"), el("dd", { class: "backup-state" }, pill(b.state, kind)),
    el("dt", {}, "on the partner"), el("dd", {},
      bytes(b.used_on_partner) + (b.quota ? ` of ${bytes(b.quota)}` : "")),
    el("dt", {}, "pending"), el("dd", { class: "pending" }, bytes(b.pending)),
    el("dt", {}, "last success"), el("dd", {}, when(b.last_ok)),
    el("dt", {}, "audits"), el("dd", { class: "audits" },
      `${b.audits.ok} passed, ${b.audits.failed} failed`),
    b.last_error ? el("dt", {}, "last error") : null,
    b.last_error ? el("dd", { class: "verdict bad" }, b.last_error) : null));
  refreshBackupPlot();
}

async function refreshBackupPlot() {
  const n = selectedRow();
  if (!n || n.role !== "owner") return;
  try {
    const data = await api(`/api/nodes/${encodeURIComponent(n.id)}/history`);
    if (state.selected === n.id) drawPlot(data.points);
  } catch (err) { /* the node left the fleet: the next refresh says so */ }
}

function niceMax(v) {
  if (v <= 0) return 1024;
  const step = Math.pow(2, Math.ceil(Math.log2(v)));
  return step / 2 >= v ? step / 2 : step;
}

// Bytes pushed (and pending) against time, as an inline SVG drawn here.
function drawPlot(points) {
  const plot = $("plot");
  plot.replaceChildren();
  const W = 640, H = 180, L = 64, R = 12, T = 12, B = 26;
  const iw = W - L - R, ih = H - T - B;
  plot.append(svg("rect", { x: L, y: T, width: iw, height: ih, fill: "#fff",
    stroke: "#e2e7ee" }));
  if (!points.length) {
    plot.append(svg("text", { x: L + iw / 2, y: T + ih / 2, "text-anchor": "middle",
      fill: "#6a7785", "font-size": 13 }, "no samples yet: the dashboard samples every poll"));
    return;
  }
  // The right edge is now; at least a minute is shown, so a new history does not look flat.
  const t1 = Math.max(points[points.length - 1][0], Date.now());
  const t0 = Math.min(points[0][0], t1 - 60000);
  const top = niceMax(Math.max(...points.map((p) => Math.max(p[1], p[2]))));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * iw;
  const y = (v) => T + ih - (v / top) * ih;
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    plot.append(svg("line", { x1: L, x2: L + iw, y1: y(v), y2: y(v), stroke: "#eef1f5" }));
    plot.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", fill: "#6a7785",
      "font-size": 11 }, bytes(v)));
  }
  const span = (t1 - t0) / 1000;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const back = Math.round(span - (span * i) / 4);
    plot.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", fill: "#6a7785",
      "font-size": 11 }, back === 0 ? "now" : `-${duration(back)}`));
  }
  const path = (idx) => points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},` +
    `${y(p[idx]).toFixed(1)}`).join(" ");
  plot.append(svg("path", { d: path(2), fill: "none", stroke: "#c98a12", "stroke-width": 1.5,
    "stroke-dasharray": "4 3", class: "pending-line" }));
  plot.append(svg("path", { d: path(1), fill: "none", stroke: "#2f7fc1", "stroke-width": 2.2,
    class: "pushed-line" }));
  const last = points[points.length - 1];
  plot.append(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 3.5, fill: "#2f7fc1" }));
  plot.setAttribute("data-pushed", last[1]);
  plot.setAttribute("data-points", points.length);
}

async function loadReceipts() {
  const box = $("receipts");
  try {
    const rows = await api(`/api/nodes/${encodeURIComponent(state.selected)}/receipts`);
    if (!rows.length) {
      box.replaceChildren(el("p", { class: "empty" },
        "None yet: one per period (Cut receipt signs the period so far)."));
      return;
    }
    box.replaceChildren(el("div", { class: "table-wrap" },
      el("table", { id: "receipts-table" }, el("thead", {}, el("tr", {},
      el("th", {}, "period end"), el("th", {}, "partner"), el("th", { class: "num" }, "stored"),
      el("th", { class: "num" }, "served"), el("th", {}, "audits"), el("th", {}, "receipt"))),
    el("tbody", {}, rows.slice(-10).reverse().map((r) => el("tr", {},
      el("td", {}, when(r.end_ms)), el("td", {}, nameOf(r.partner)),
      el("td", { class: "num" }, `${r.stored_byte_hours} B·h`),
      el("td", { class: "num" }, bytes(r.served)),
      el("td", {}, `${r.audits_ok} ok / ${r.audits_failed} failed`),
      el("td", { class: "mono" }, r.id.slice(0, 12))))))));
  } catch (err) {
    box.replaceChildren(el("p", { class: "verdict bad" }, err.message));
  }
}

async function backupAction(action, button, extra) {
  if (!state.selected) return;
  const job = await runJob(Object.assign({ action, node: ref(state.selected) }, extra),
    button);
  if (action === "audit" && job.result && job.result.results) {
    $("audit-results").replaceChildren(el("h3", {}, "Last audit"),
      el("ul", { id: "audit-list" }, job.result.results.map((r) => el("li", {},
        r.ok ? pill("pass", "ok") : pill("FAIL", "bad"), ` ${r.mid.slice(0, 10)}… v${r.n}`,
        r.error ? ` (${r.error})` : ""))));
  }
  await refreshFleet();
  loadNode();
}

// ---- pairing ------------------------------------------------------------------------------------

let pairTimer = null;

function renderPickers() {
  const owned = state.fleet.filter((n) => n.role === "owner");
  fill($("pair-a"), owned.filter((n) => n.online), 0);
  fill($("pair-b"), owned.filter((n) => n.online), 1);
  fill($("restore-dead"), owned, -1, (n) => !n.online);
  fill($("restore-onto"), owned.filter((n) => n.online), -1, (n) => !n.partner);
}

// Keep the user's choice across refreshes; otherwise preselect the index-th node (or the first
// that prefer() likes).
function fill(select, nodes, index, prefer) {
  const keep = select.value;
  const ids = nodes.map((n) => `${n.id}=${n.name}`).join();
  if (select.dataset.ids !== ids) {
    select.replaceChildren(...nodes.map((n) => el("option", { value: n.id },
      `${n.name || "?"} (${shortId(n.id)})`)));
    select.dataset.ids = ids;
    if (nodes.some((n) => n.id === keep)) select.value = keep;
    else if (prefer && nodes.some(prefer)) select.value = nodes.find(prefer).id;
    else if (index >= 0 && nodes[index]) select.value = nodes[index].id;
  }
}

// The two chosen nodes' pairing as the fleet poll last saw it (no calls of its own); while a
// pairing the user started is being watched, watchPairing() draws instead.
function peekPairing() {
  // Not while a pairing is watched, nor from a poll that may have begun before it ended.
  if (pairTimer || (state.polledAt || 0) * 1000 < state.pairWatchEnded + state.pollMs) return;
  const a = $("pair-a").value, b = $("pair-b").value;
  const ra = state.fleet.find((n) => n.id === a), rb = state.fleet.find((n) => n.id === b);
  if (!ra || !rb || a === b || !ra.pair_state || !rb.pair_state) return;
  const as = (n) => ({ pair_state: n.pair_state, pair_code: n.pair_code, peer: n.partner,
                       pair: n.pair_window, window_left: "?" });
  // A code already shown for the same partner stays until the poll has one (the poll may
  // lag the pairing just watched; a restored node no longer holds its code).
  const code = (box, r) => r.pair_code ||
    (box.dataset.code && box.dataset.peer === r.partner ? box.dataset.code : null);
  const ca = code($("code-a"), ra), cb = code($("code-b"), rb);
  showCode($("code-a"), a, Object.assign(as(ra), { pair_code: ca }));
  showCode($("code-b"), b, Object.assign(as(rb), { pair_code: cb }));
  const same = ra.partner === b && rb.partner === a && ca && ca === cb;
  $("code-a").classList.toggle("match", !!same);
  $("code-b").classList.toggle("match", !!same);
  if (same) {
    verdict("pair-verdict", `Codes match: ${nameOf(a)} and ${nameOf(b)} are partners.`, "ok");
  } else if (ra.partner === b && rb.partner === a) {
    verdict("pair-verdict", `${nameOf(a)} and ${nameOf(b)} are partners.`, "ok");
  }
}

async function openPairing(e) {
  e.preventDefault();
  const a = $("pair-a").value, b = $("pair-b").value;
  if (!a || !b || a === b) {
    verdict("pair-verdict", "Pick two different nodes you own.", "bad");
    return;
  }
  const button = $("pair-open");
  stopWatch();
  pairTimer = setInterval(() => {}, 60000);  // a watch from now on: peekPairing() keeps off
  verdict("pair-verdict", "Opening both pairing windows…", "");
  const jobs = await Promise.all([runJob({ action: "pair", node: ref(a) }, button),
    runJob({ action: "pair", node: ref(b) })]);
  if (jobs.some((j) => j.state !== "done")) {
    stopWatch();
    verdict("pair-verdict", "Could not open both windows: see Activity.", "bad");
    return;
  }
  watchPairing(a, b);
}

function stopWatch() {
  clearInterval(pairTimer);
  pairTimer = null;
  state.pairWatchEnded = Date.now();
}

function watchPairing(a, b) {
  stopWatch();
  const started = Date.now();
  const tick = async () => {
    let sa, sb;
    try {
      [sa, sb] = await Promise.all([a, b].map((id) =>
        api(`/api/nodes/${encodeURIComponent(id)}/pairing`)));
    } catch (err) {
      verdict("pair-verdict", err.message, "bad");
      return;
    }
    showCode($("code-a"), a, sa);
    showCode($("code-b"), b, sb);
    const paired = sa.pair_state === "paired" && sb.pair_state === "paired" &&
      sa.peer === b && sb.peer === a;
    const same = paired && sa.pair_code && sa.pair_code === sb.pair_code;
    $("code-a").classList.toggle("match", !!same);
    $("code-b").classList.toggle("match", !!same);
    if (same) {
      verdict("pair-verdict", `Codes match: ${nameOf(a)} and ${nameOf(b)} are partners.`, "ok");
      stopWatch();
      refreshFleet();
    } else if (paired) {
      verdict("pair-verdict", "The codes differ: do not trust this pairing (unpair both).",
        "bad");
      stopWatch();
    } else if (!["open", "pairing"].includes(sa.pair_state) &&
               !["open", "pairing"].includes(sb.pair_state) && Date.now() - started > 5000) {
      verdict("pair-verdict", `Not paired: ${sa.pair_reason || sb.pair_reason || sa.pair_state}`,
        "bad");
      stopWatch();
    } else {
      verdict("pair-verdict", "Windows open: the nodes are finding each other…", "");
    }
  };
  tick();
  pairTimer = setInterval(tick, PAIR_POLL_MS);
}

function showCode(box, id, s) {
  box.querySelector(".who").textContent = nameOf(id);
  box.querySelector(".code").textContent = s.pair_code || "······";
  box.querySelector(".state").textContent = s.pair_state +
    (s.pair ? (typeof s.window_left === "number" ? ` · window ${s.window_left} s left`
      : " · window open") : "") +
    (s.peer ? ` · partner ${nameOf(s.peer)}` : "");
  box.dataset.state = s.pair_state;
  box.dataset.code = s.pair_code || "";
  box.dataset.peer = s.peer || "";
}

function verdict(id, text, kind) {
  const p = $(id);
  p.textContent = text;
  p.className = "verdict " + (kind || "");
}

// ---- restore ------------------------------------------------------------------------------------

async function restore(e) {
  e.preventDefault();
  const dead = $("restore-dead").value, onto = $("restore-onto").value;
  if (!dead || !onto || dead === onto) {
    verdict("restore-result", "Pick the dead node and a fresh board you own.", "bad");
    return;
  }
  verdict("restore-result", `Restoring ${nameOf(dead)} onto ${nameOf(onto)}…`, "");
  const job = await runJob({ action: "restore", dead: ref(dead),
                             onto: ref(onto) }, $("restore"));
  if (job.state === "done") {
    const r = job.result;
    verdict("restore-result", `Restored ${r.versions} versions of ${r.mimei} MiMei ` +
      `(${bytes(r.bytes)}) onto ${r.onto}: it now runs as ${nameOf(r.id)}.`, "ok");
  } else {
    verdict("restore-result", job.error || "restore failed", "bad");
  }
}

// ---- the organization ---------------------------------------------------------------------------

async function loadOrgs() {
  let orgs;
  try { orgs = await api("/api/orgs"); } catch (err) { return; }
  const select = $("org");
  select.hidden = orgs.length === 0;
  fill(select, orgs.map((o) => ({ id: o.name, name: o.name })), 0);
  for (const option of select.options) option.textContent = option.value;
  if (orgs.length) loadOrg(select.value);
}

async function loadOrg(name) {
  const box = $("org-body");
  let data;
  try { data = await api(`/api/orgs/${encodeURIComponent(name)}`); } catch (err) {
    box.replaceChildren(el("p", { class: "verdict bad" }, err.message));
    return;
  }
  const accounts = data.accounts.map((a) => el("tr", { "data-member": a.id },
    el("td", {}, a.name || "—"), el("td", { class: "mono", title: a.id }, shortId(a.id)),
    el("td", {}, a.role || (a.name === "treasury" ? "" : "former")),
    el("td", { class: "num balance" }, a.balance.toLocaleString()),
    el("td", {}, data.epoch ? el("button", { class: "small ghost", "data-action": "proof",
      onclick: () => saveDownload(`/api/orgs/${encodeURIComponent(name)}/proof/` +
        encodeURIComponent(a.id), `${a.id}.proof`) }, "Proof") : null)));
  const receipts = data.receipts.slice(0, 8).map((r) => el("tr", {},
    el("td", { class: "mono" }, r.id.slice(0, 10)), el("td", {}, nameOf(r.issuer)),
    el("td", {}, nameOf(r.partner)), el("td", { class: "num" }, `${r.stored} B·h`),
    el("td", {}, pill(r.status, r.status === "settled" ? "ok"
      : r.status === "rejected" ? "bad" : "warn"))));
  box.replaceChildren(el("dl", { class: "facts" },
    el("dt", {}, "ID"), el("dd", { class: "mono" }, data.id),
    el("dt", {}, "epoch"), el("dd", {}, data.epoch || "none settled yet"),
    el("dt", {}, "supply"), el("dd", {}, data.supply.toLocaleString()),
    el("dt", {}, "root"), el("dd", { class: "mono" }, data.root ? data.root.slice(0, 24) + "…"
      : "—")),
  el("table", { id: "balances" }, el("thead", {}, el("tr", {}, el("th", {}, "member"),
    el("th", {}, "ID"), el("th", {}, "role"), el("th", { class: "num" }, "balance"),
    el("th", {}, ""))), el("tbody", {}, accounts)),
  el("h3", {}, "Receipt pool"),
  receipts.length ? el("table", {}, el("tbody", {}, receipts))
    : el("p", { class: "empty" }, "No receipts collected (leither receipts collect)."));
}

// ---- start -------------------------------------------------------------------------------------

async function loadJobs() {
  try {
    const data = await api("/api/jobs");
    for (const job of data.jobs.slice().reverse()) renderJob(job);
  } catch (err) { /* shown by the fleet refresh */ }
}

function takeToken() {
  const match = /token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  return true;
}

function start() {
  takeToken();
  // The printed link pasted into a tab already open here changes only the fragment.
  window.addEventListener("hashchange", () => { if (takeToken()) location.reload(); });
  $("gate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("gate-token").value.trim());
    location.reload();
  });
  if (!token()) { showGate(); return; }
  $("main").hidden = false;
  $("pair-form").addEventListener("submit", openPairing);
  $("pair-a").addEventListener("change", peekPairing);
  $("pair-b").addEventListener("change", peekPairing);
  $("restore-form").addEventListener("submit", restore);
  $("backup-now").addEventListener("click", (e) => backupAction("backup_now", e.target));
  $("audit").addEventListener("click", (e) => backupAction("audit", e.target, { count: 4 }));
  $("cut-receipt").addEventListener("click", (e) => backupAction("cut_receipt", e.target));
  $("discover").addEventListener("click", (e) => runJob({ action: "discover" }, e.target));
  $("org").addEventListener("change", (e) => loadOrg(e.target.value));
  drawPlot([]);
  refreshFleet().then(loadJobs);
  loadOrgs();
  const loop = async () => {
    await refreshFleet();
    setTimeout(loop, state.pollMs);
  };
  setTimeout(loop, state.pollMs);
  setInterval(loadOrgs, 15000);
  setTimeout(followLog, LOG_POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
