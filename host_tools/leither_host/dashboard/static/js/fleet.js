// The fleet table (as `leither ls`, refreshed at the sampler's pace) and one node: its facts,
// MiMei and versions (downloads), its log followed like `leither logs -f`, rename and forget.
import {
  $, LOG_KEPT, LOG_POLL_MS, ago, api, bytes, duration, el, nameOf, pill, put, ref, runJob,
  saveDownload, shortId, state, when
} from "./core.js";
import { loadReceipts, refreshBackupPlot, renderBackup } from "./backup.js";
import { peekPairing, renderPickers } from "./pairing.js";

export async function refreshFleet() {
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

export function backupLag(n) {
  const b = n.backup;
  if (!b) return n.role === "owner" ? "—" : "";
  if (!n.partner) return pill("no partner");
  const last = b.last_ok ? "last " + ago(b.last_ok / 1000) : "never";
  if (b.state === "error") return pill(`error · ${last}`, "bad");
  if (b.pending) return pill(`${bytes(b.pending)} pending · ${last}`, "warn");
  return pill(`up to date · ${last}`, "ok");
}

export function renderFleet() {
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

export async function claim(n, button) {
  const params = { action: "claim", node: ref(n.id) };
  const input = $("claim-token");
  if (input && input.value.trim() && state.selected === n.id) {
    params.claim_token = input.value.trim();
  }
  const job = await runJob(params, button);
  if (job.state === "done" && state.selected === n.id) loadNode();
}

// ---- one node: facts, MiMei, versions ----------------------------------------------------------

export function select(id) {
  state.selected = id;
  state.node = null;
  renderFleet();
  loadNode();
}

export function selectedRow() { return state.fleet.find((n) => n.id === state.selected); }

export async function loadNode() {
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
export function manageRow(n) {
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

export function renderLog() {
  const box = $("log");
  if (!box) return;
  const stamp = (ms) => new Date(ms).toLocaleTimeString();
  box.textContent = (state.log.note ? state.log.note + "\n" : "") +
    state.log.lines.map(([, ms, text]) => `${stamp(ms)}  ${text}`).join("\n");
  box.scrollTop = box.scrollHeight;
}

// Follow the selected node's log, like `leither logs -f`.
export async function followLog() {
  await fetchLog();
  setTimeout(followLog, LOG_POLL_MS);
}

export async function fetchLog() {
  if (state.log.busy) return;  // one request at a time: two would add the same lines twice
  state.log.busy = true;
  try { await fetchLogOnce(); } finally { state.log.busy = false; }
}

export async function fetchLogOnce() {
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

export async function showVersions(m, button) {
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

export async function newVersion(m, button) {
  const job = await runJob({ action: "mm_backup", node: ref(state.selected), mid: m.mid },
    button);
  if (job.state === "done") { await loadNode(); showVersions(m); }
}
