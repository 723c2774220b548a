// An organization's books: balances (a proof bundle per member to download) and the receipt
// pool.
import { $, api, el, nameOf, pill, saveDownload, shortId } from "./core.js";
import { fill } from "./pairing.js";

export async function loadOrgs() {
  let orgs;
  try { orgs = await api("/api/orgs"); } catch (err) { return; }
  const select = $("org");
  select.hidden = orgs.length === 0;
  fill(select, orgs.map((o) => ({ id: o.name, name: o.name })), 0);
  for (const option of select.options) option.textContent = option.value;
  if (orgs.length) loadOrg(select.value);
}

export async function loadOrg(name) {
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
