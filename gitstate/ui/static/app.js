// gitstate ui: every document value is put in the page with textContent, never as HTML.
"use strict";
const CSRF = document.querySelector('meta[name="csrf"]').content;
const $ = (id) => document.getElementById(id);
let offset = 0, head = null, picked = null, pending = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(v) { return typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v); }
async function get(path, params) {
  const r = await fetch(path + "?" + new URLSearchParams(params || {}), { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
async function post(path, params) {
  const r = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF }, body: JSON.stringify(params) });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function commitRow(c) {
  const li = el("li", "a-" + c.actor);
  li.dataset.id = c.id;
  li.appendChild(el("span", "actor", c.actor));
  li.appendChild(el("span", "id", c.id.slice(0, 8) + " "));
  li.appendChild(el("span", "subject", c.subject));
  for (const s of c.snapshots) li.appendChild(el("span", "snap", "⚑ " + s));
  li.appendChild(el("div", "time", c.time + " · " + c.author));
  li.addEventListener("click", (ev) => select(c.id, ev.shiftKey));
  return li;
}
async function loadTimeline(reset) {
  if (reset) { offset = 0; $("timeline").replaceChildren(); }
  const page = await get("/api/log", { offset: offset, limit: 50 });
  for (const c of page.commits) $("timeline").appendChild(commitRow(c));
  offset += page.commits.length;
  $("more").hidden = !page.more;
}

function renderChanges(list, changes) {
  list.replaceChildren();
  if (!changes.length) list.appendChild(el("li", "", "(no changes)"));
  for (const ch of changes) {
    const key = ch.doc + (ch.key.length ? ": " + ch.key.join(".") : "");
    const text = ch.op === "add" ? "+ " + key + " = " + fmt(ch.new)
      : ch.op === "remove" ? "- " + key + " (was " + fmt(ch.old) + ")"
      : "~ " + key + ": " + fmt(ch.old) + " → " + fmt(ch.new);
    const li = el("li", ch.op, text);
    if (ch.key.length) li.addEventListener("click", () => keyHistory(ch.doc, ch.key.join(".")));
    list.appendChild(li);
  }
}

async function select(id, asSecond) {
  for (const li of document.querySelectorAll("#timeline li")) li.classList.remove("selected");
  const row = document.querySelector(`#timeline li[data-id="${id}"]`);
  if (row) row.classList.add("selected");
  const a = asSecond && picked ? picked : id + "~1";
  const b = id;
  if (!asSecond) picked = id;
  const short = (r) => (r.endsWith("~1") ? r.slice(0, 8) + "~1" : r.slice(0, 8));
  $("diff-range").textContent = short(a) + " → " + short(b);
  renderChanges($("diff"), (await get("/api/diff", { a: a, b: b })).changes);
  await showDocs(id);
}

function tree(value, doc, path) {
  if (value !== null && typeof value === "object") {
    const ul = el("ul", "tree");
    for (const [k, v] of Object.entries(value)) {
      const li = el("li");
      const key = path.concat([k]).join(".");
      const label = el("span", "k", k);
      label.addEventListener("click", () => keyHistory(doc, key));
      li.appendChild(label);
      if (v !== null && typeof v === "object") li.appendChild(tree(v, doc, path.concat([k])));
      else { li.appendChild(document.createTextNode(": ")); li.appendChild(el("span", "v", fmt(v))); }
      ul.appendChild(li);
    }
    return ul;
  }
  return el("span", "v", fmt(value));
}
async function showDocs(rev) {
  const res = await get("/api/docs", { rev: rev });
  $("docs-rev").textContent = rev === "HEAD" ? "HEAD" : rev.slice(0, 8);
  $("docs-rev").dataset.rev = rev;
  const box = $("docs");
  box.replaceChildren();
  for (const [doc, value] of Object.entries(res.docs)) {
    const d = el("div", "doc");
    const h = el("h3", "", doc + " ");
    const btn = el("button", "restore-doc", "Restore this document to this point");
    btn.addEventListener("click", () => confirmAction("Restore " + doc + " to " + rev.slice(0, 8), "/api/restore", { rev: rev, doc: doc }));
    h.appendChild(btn);
    d.appendChild(h);
    d.appendChild(tree(value, doc, []));
    box.appendChild(d);
  }
}

function chart(points) {
  const NS = "http://www.w3.org/2000/svg", W = 480, H = 160, P = 24;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("id", "key-chart");
  const vs = points.map((p) => p.value), lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  const x = (i) => P + (points.length > 1 ? i * (W - 2 * P) / (points.length - 1) : (W - 2 * P) / 2);
  const y = (v) => H - P - (v - lo) * (H - 2 * P) / span;
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", points.map((p, i) => x(i) + "," + y(p.value)).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#3b6fd8"); line.setAttribute("stroke-width", "2");
  svg.appendChild(line);
  points.forEach((p, i) => {
    const c = document.createElementNS(NS, "circle");
    c.setAttribute("cx", x(i)); c.setAttribute("cy", y(p.value)); c.setAttribute("r", "3"); c.setAttribute("fill", "#3b6fd8");
    const t = document.createElementNS(NS, "title"); t.textContent = p.value + " at " + p.time; c.appendChild(t);
    svg.appendChild(c);
  });
  for (const [v, yy] of [[hi, P], [lo, H - P]]) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", 2); t.setAttribute("y", yy); t.setAttribute("font-size", "10"); t.textContent = String(v);
    svg.appendChild(t);
  }
  return svg;
}
async function keyHistory(doc, key) {
  const res = await get("/api/key", { doc: doc, key: key });
  $("key-name").textContent = doc + ": " + key;
  $("chart").replaceChildren();
  if (res.numeric) $("chart").appendChild(chart(res.points));
  const list = $("key-values");
  list.replaceChildren();
  for (const p of res.points) list.appendChild(el("li", "a-" + p.actor, p.time + "  " + p.actor + "  " + fmt(p.value)));
}

async function confirmAction(title, path, params) {
  const preview = await post(path, Object.assign({ dry_run: true }, params));
  $("confirm-title").textContent = title + "?";
  renderChanges($("confirm-changes"), preview.changes);
  $("confirm").hidden = false;
  pending = { path: path, params: params };
}
$("confirm-yes").addEventListener("click", async () => {
  if (!pending) return;
  const p = pending; pending = null;
  $("confirm").hidden = true;
  await post(p.path, p.params);
  await refresh();
});
$("confirm-no").addEventListener("click", () => { pending = null; $("confirm").hidden = true; });
$("undo").addEventListener("click", () => confirmAction("Undo the last commit", "/api/undo", {}));
$("restore-all").addEventListener("click", () => {
  const rev = $("docs-rev").dataset.rev || "HEAD";
  confirmAction("Restore all documents to " + rev.slice(0, 8), "/api/restore", { rev: rev });
});
$("snap-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("snap-name").value.trim();
  if (name) confirmAction("Take snapshot " + name, "/api/snapshot", { name: name });
});
$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await get("/api/search", { q: $("search").value });
  const list = $("hits");
  list.replaceChildren();
  for (const h of res.hits) {
    const li = el("li", "", h.doc + ": " + h.key + " = " + fmt(h.value));
    li.addEventListener("click", () => keyHistory(h.doc, h.key));
    list.appendChild(li);
  }
  if (!res.hits.length) list.appendChild(el("li", "", "(nothing found)"));
});
$("more").addEventListener("click", () => loadTimeline(false));

async function refresh() {
  const h = await get("/api/head");
  head = h.head;
  $("head").textContent = head ? "HEAD " + head.slice(0, 8) : "(empty store)";
  $("head").dataset.head = head || "";
  await loadTimeline(true);
  await showDocs("HEAD");
}
async function poll() {  // follow the store live: a cheap head check every second
  try {
    const h = await get("/api/head");
    if (h.head !== head) await refresh();
  } catch (e) { /* server gone: keep trying */ }
  setTimeout(poll, 1000);
}
refresh().then(() => setTimeout(poll, 1000));
