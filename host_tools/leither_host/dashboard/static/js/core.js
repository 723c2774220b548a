// The dashboard page (plain JS modules, no framework, nothing fetched from elsewhere), its
// shared parts: state, DOM and format helpers, the API (every call carries the token, kept for
// this tab only) and jobs (a write runs a `leither` verb; Activity shows the command line).
// Text from nodes goes in with textContent only: a node's name is untrusted input.
import { refreshFleet } from "./fleet.js";

export const TOKEN_KEY = "leither-dashboard-token";
export const JOB_POLL_MS = 500;
export const PAIR_POLL_MS = 1000;
export const LOG_POLL_MS = 2000;
export const LOG_KEPT = 400;  // lines of a node's log kept on the page (its ring holds fewer)
export const state = { fleet: [], selected: null, node: null, pollMs: 3000, org: null, jobs: [],
                polledAt: null, pairWatchEnded: 0,
                log: { id: null, after: 0, lines: [], note: "", busy: false } };

// ---- small helpers ---------------------------------------------------------------------------

export function $(id) { return document.getElementById(id); }

export function el(tag, attrs, ...children) {
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

export const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(s) {
  if (s === null || s === undefined) return "—";
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "—";
}

export function shortId(id) { return id ? id.slice(0, 8) : "—"; }

export function nameOf(id) {
  if (!id) return "—";
  const row = state.fleet.find((n) => n.id === id);
  return row && row.name ? row.name : shortId(id);
}

// replaceChildren that skips the null of a `cond ? el(...) : null`.
export function put(box, ...children) {
  box.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

// How a job names a node on its command line: its name where that is unique in the fleet (as
// a user types it; a simulated board's claim token is found by name), else an ID prefix.
export function ref(id) {
  const row = state.fleet.find((n) => n.id === id);
  if (row && row.name && state.fleet.filter((n) => n.name === row.name).length === 1 &&
      /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(row.name)) return row.name;
  return id.slice(0, 12);
}

export function pill(text, kind) { return el("span", { class: `pill ${kind || ""}` }, text); }

// ---- the API -----------------------------------------------------------------------------------

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

export function showGate(why) {
  $("main").hidden = true;
  $("token-gate").hidden = false;
  if (why) $("gate-why").textContent = why;
}

export async function api(path, options) {
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
export async function runJob(params, button) {
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

export function renderJob(job) {
  const list = $("jobs");
  $("jobs-empty").hidden = true;
  let item = list.querySelector(`[data-job="${job.id}"]`);
  const badge = job.state === "running" ? pill("running", "warn")
    : job.state === "done" ? pill("done", "ok") : pill("failed", "bad");
  let detail = "";
  if (job.state === "failed") detail = job.error || "failed";
  else if (job.state === "done") detail = summarize(job);
  const body = el("div", {}, el("div", { class: "what" }, "$ " + job.command),
    detail ? el("div", { class: "detail" + (job.state === "failed" ? " bad" : "") }, detail)
      : null);
  const fresh = el("li", { "data-job": job.id, "data-state": job.state }, badge, body);
  if (item) item.replaceWith(fresh); else list.prepend(fresh);
}

export function summarize(job) {
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

export async function saveDownload(path, fallbackName) {
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

export function verdict(id, text, kind) {
  const p = $(id);
  p.textContent = text;
  p.className = "verdict " + (kind || "");
}
