// Backup of the selected node: status, the plot of bytes pushed (inline SVG drawn here), audits
// and the receipts it signed.
import {
  $, api, bytes, duration, el, nameOf, pill, put, ref, runJob, state, svg, when
} from "./core.js";
import { loadNode, refreshFleet, selectedRow } from "./fleet.js";

export function renderBackup(b) {
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

export async function refreshBackupPlot() {
  const n = selectedRow();
  if (!n || n.role !== "owner") return;
  try {
    const data = await api(`/api/nodes/${encodeURIComponent(n.id)}/history`);
    if (state.selected === n.id) drawPlot(data.points);
  } catch (err) { /* the node left the fleet: the next refresh says so */ }
}

export function niceMax(v) {
  if (v <= 0) return 1024;
  const step = Math.pow(2, Math.ceil(Math.log2(v)));
  return step / 2 >= v ? step / 2 : step;
}

// Bytes pushed (and pending) against time, as an inline SVG drawn here.
export function drawPlot(points) {
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

export async function loadReceipts() {
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

export async function backupAction(action, button, extra) {
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
