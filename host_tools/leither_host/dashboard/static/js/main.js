// The dashboard page's entry: takes the token from the printed link, wires the controls and
// starts the refresh loops.
import {
  $, LOG_POLL_MS, TOKEN_KEY, api, renderJob, runJob, showGate, state, token
} from "./core.js";
import { followLog, refreshFleet } from "./fleet.js";
import { backupAction, drawPlot } from "./backup.js";
import { openPairing, peekPairing, restore } from "./pairing.js";
import { loadOrg, loadOrgs } from "./ledger.js";

export async function loadJobs() {
  try {
    const data = await api("/api/jobs");
    for (const job of data.jobs.slice().reverse()) renderJob(job);
  } catch (err) { /* shown by the fleet refresh */ }
}

export function takeToken() {
  const match = /token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
  return true;
}

export function start() {
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
