// Pairing two nodes (both windows opened, both 6-digit codes side by side) and restoring a dead
// node onto a fresh board.
import {
  $, PAIR_POLL_MS, api, bytes, el, nameOf, ref, runJob, shortId, state, verdict
} from "./core.js";
import { refreshFleet } from "./fleet.js";

// ---- pairing ---------------------------------------------------------------------------

let pairTimer = null;

export function renderPickers() {
  const owned = state.fleet.filter((n) => n.role === "owner");
  fill($("pair-a"), owned.filter((n) => n.online), 0);
  fill($("pair-b"), owned.filter((n) => n.online), 1);
  fill($("restore-dead"), owned, -1, (n) => !n.online);
  fill($("restore-onto"), owned.filter((n) => n.online), -1, (n) => !n.partner);
}

// Keep the user's choice across refreshes; otherwise preselect the index-th node (or the first
// that prefer() likes).
export function fill(select, nodes, index, prefer) {
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
export function peekPairing() {
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

export async function openPairing(e) {
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

export function stopWatch() {
  clearInterval(pairTimer);
  pairTimer = null;
  state.pairWatchEnded = Date.now();
}

export function watchPairing(a, b) {
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

export function showCode(box, id, s) {
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

// ---- restore ---------------------------------------------------------------------------

export async function restore(e) {
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
