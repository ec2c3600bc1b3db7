// The page of `clarity ui`: plain DOM, no library. Every value from the store is set with textContent or
// an attribute, never parsed as HTML, so a memory that holds markup stays text.
"use strict";

// `seq` numbers the page's loads: an answer that arrives after a newer load started is dropped
const state = { csrf: "", offset: 0, limit: 25, events: null, current: null, seq: 0 };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

// ---- helpers -------------------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// replaceChildren without the null, undefined and false children (replaceChildren would print "null")
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, body) {
  const init = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = state.csrf;
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : { error: await res.text() };
  if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function split(value) {
  return (value || "").split(",").map((s) => s.trim()).filter(Boolean);
}

function confirmAction(text, ok) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok || "Confirm";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

function flash(parent, text) {
  for (const old of parent.querySelectorAll(":scope > .flash")) old.remove();
  parent.prepend(el("p", { class: "flash", role: "status", text }));
}

// ---- memories: list and search -------------------------------------------------------------------

function card(mem) {
  const content = mem.content || "";
  return el("li", { class: "card" + (mem.superseded_by ? " superseded" : ""), "data-id": mem.id },
    el("div", { class: "meta" },
      el("span", { class: "badge type", text: mem.memory_type }),
      el("span", { text: `importance ${mem.importance}` }),
      el("span", { text: when(mem.created_at) }),
      mem.origin ? el("span", { class: "badge", text: mem.origin }) : null,
      mem.similarity !== undefined ? el("span", { text: `similarity ${mem.similarity.toFixed(3)}` }) : null,
      mem.superseded_by ? el("span", { class: "badge", text: "superseded" }) : null,
      mem.flagged ? el("span", { class: "badge warn", title: mem.flagged, text: "flagged" }) : null),
    el("a", { class: "content", href: `#/memory/${encodeURIComponent(mem.id)}`,
              text: content.length > 400 ? content.slice(0, 400) + " …" : content || mem.id }),
    mem.flagged ? el("p", { class: "warn-text", text: `Flagged: ${mem.flagged}` }) : null,
    el("div", { class: "tags" }, (mem.tags || []).map((t) => el("span", { class: "tag", text: t }))));
}

function searchParams() {
  const form = $("search");
  const params = new URLSearchParams();
  const q = form.q.value.trim();
  if (q) { params.set("q", q); params.set("mode", form.mode.value); }
  for (const name of ["type", "tag", "session"]) for (const v of split(form[name].value)) params.append(name, v);
  if (form.origin.value) params.append("origin", form.origin.value);
  for (const name of ["since", "until"]) if (form[name].value.trim()) params.set(name, form[name].value.trim());
  if (form.superseded.checked) params.set("superseded", "1");
  params.set("offset", String(state.offset));
  params.set("limit", String(state.limit));
  return params;
}

async function loadList() {
  const params = searchParams();
  const seq = ++state.seq;
  const res = await api(`/api/memories?${params}`);
  if (seq !== state.seq) return;
  const list = $("list");
  fill(list, ...res.memories.map(card));
  let summary;
  if (!res.store_exists) summary = res.note;
  else if (res.search) summary = `${res.total} found for “${params.get("q")}”, best first`;
  else if (res.total === 0) summary = "no memories";
  else summary = `${res.offset + 1}–${res.offset + res.memories.length} of ${res.total}, newest first`;
  $("list-summary").textContent = summary;
  $("prev").disabled = res.search || state.offset === 0;
  $("next").disabled = res.search || state.offset + res.memories.length >= res.total;
}

// ---- one memory ----------------------------------------------------------------------------------

function field(dl, name, value) {
  if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) return;
  dl.append(el("dt", { text: name }), el("dd", { text: Array.isArray(value) ? value.join(", ") : String(value) }));
}

function chainList(title, items) {
  if (!items.length) return null;
  return el("div", { class: "chain" }, el("h3", { text: title }),
    el("ol", {}, items.map((m) => el("li", {},
      m.missing ? el("span", { class: "muted", text: `${m.id} (no longer stored)` })
        : el("a", { href: `#/memory/${encodeURIComponent(m.id)}`, text: (m.content || m.id).slice(0, 160) }),
      m.created_at ? el("span", { class: "muted", text: ` · ${when(m.created_at)}` }) : null))));
}

function editor(mem, mode) {
  const content = el("textarea", { name: "content", rows: 8 });
  content.value = mem.content || "";
  const type = el("input", { name: "memory_type", value: mem.memory_type });
  const importance = el("input", { name: "importance", type: "number", min: 0, max: 1, step: 0.05,
                                    value: mem.importance });
  const tags = el("input", { name: "tags", value: (mem.tags || []).join(", ") });
  const label = mode === "edit" ? "Save changes" : "Store as replacement";
  const form = el("form", { class: "editor", "data-mode": mode },
    el("label", {}, "content", content), el("label", {}, "type", type),
    el("label", {}, "importance", importance), el("label", {}, "tags (comma-separated)", tags),
    el("div", { class: "actions" }, el("button", { type: "submit", text: label }),
      el("button", { type: "button", text: "Cancel", onclick: () => renderMemory(mem.id) })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fields = { content: content.value, memory_type: type.value.trim(), importance: Number(importance.value),
                     tags: split(tags.value) };
    try {
      if (mode === "edit") {
        const changed = {};
        for (const [k, v] of Object.entries(fields)) {
          if (JSON.stringify(v) !== JSON.stringify(k === "tags" ? mem.tags || [] : mem[k])) changed[k] = v;
        }
        if (!Object.keys(changed).length) { showError("nothing changed"); return; }
        if (!await confirmAction(`Save ${Object.keys(changed).join(", ")} of memory ${mem.id}?`, "Save")) return;
        await api(`/api/memory/${encodeURIComponent(mem.id)}/update`, changed);
        await renderMemory(mem.id, "updated");
      } else {
        if (!await confirmAction(`Store this as a new memory that supersedes ${mem.id}?`, "Supersede")) return;
        const res = await api(`/api/memory/${encodeURIComponent(mem.id)}/supersede`, fields);
        location.hash = `#/memory/${encodeURIComponent(res.id)}`;
      }
    } catch (e) { showError(e.message); }
  });
  return form;
}

async function renderMemory(id, note) {
  const view = $("view-memory");
  const seq = ++state.seq;
  const res = await api(`/api/memory/${encodeURIComponent(id)}`);
  if (seq !== state.seq) return;
  const mem = res.memory;
  state.current = mem;
  const dl = el("dl", { class: "fields" });
  field(dl, "id", mem.id);
  field(dl, "type", mem.memory_type);
  field(dl, "importance", mem.importance);
  field(dl, "tags", mem.tags);
  field(dl, "session", mem.session || "-");
  field(dl, "origin", mem.origin || "-");
  field(dl, "origin detail", mem.origin_detail);
  field(dl, "created", when(mem.created_at));
  field(dl, "updated", when(mem.updated_at));
  field(dl, "content hash", mem.content_hash);
  const actions = el("div", { class: "actions" },
    el("button", { type: "button", text: "Edit", onclick: () => actions.replaceWith(editor(mem, "edit")) }),
    el("button", { type: "button", text: "Supersede", disabled: Boolean(mem.superseded_by),
                   onclick: () => actions.replaceWith(editor(mem, "supersede")) }),
    el("button", { type: "button", class: "danger", text: "Delete", onclick: async () => {
      if (!await confirmAction(`Delete memory ${mem.id}? This cannot be undone.`, "Delete")) return;
      try {
        await api(`/api/memory/${encodeURIComponent(mem.id)}/delete`, {});
        location.hash = "#/memories";
        flash($("view-memories"), `deleted ${mem.id}`);
      } catch (e) { showError(e.message); }
    } }),
    mem.flagged ? el("button", { type: "button", text: "Mark reviewed", onclick: async () => {
      if (!await confirmAction(`Show memory ${mem.id} to agents like any other? Its text was flagged: ` +
                               `${mem.flagged}.`, "Mark reviewed")) return;
      try {
        await api(`/api/memory/${encodeURIComponent(mem.id)}/review`, {});
        await renderMemory(mem.id, `reviewed ${mem.id}: no longer flagged`);
      } catch (e) { showError(e.message); }
    } }) : null);
  const json = (title, obj) => obj && Object.keys(obj).length
    ? el("div", {}, el("h3", { text: title }), el("pre", { class: "json", text: JSON.stringify(obj, null, 2) })) : null;
  fill(view,
    el("p", {}, el("a", { href: "#/memories", text: "← memories" })),
    mem.flagged ? el("p", { class: "warn-text", text: `Flagged: ${mem.flagged}. It reads like an instruction to ` +
                            "an agent: review it before a session acts on it." }) : null,
    mem.superseded_by ? el("p", { class: "muted", text: "Superseded by a newer memory (below)." }) : null,
    el("pre", { class: "content", id: "memory-content", text: mem.content || "" }),
    dl, actions,
    json("metadata", mem.metadata), json("context", mem.context),
    chainList("Supersedes (oldest first)", res.older), chainList("Superseded by", res.newer),
    res.similar.length ? el("div", { class: "chain" }, el("h3", { text: "Near-duplicates" }),
      el("ol", {}, res.similar.map((m) => el("li", {},
        el("a", { href: `#/memory/${encodeURIComponent(m.id)}`, text: (m.content || m.id).slice(0, 160) }),
        el("span", { class: "muted", text: ` · similarity ${m.similarity.toFixed(3)}` })))))
      : el("p", { class: "muted", text: "No near-duplicates." }));
  view.dataset.id = mem.id;
  if (note) flash(view, note);
}

// ---- flagged -------------------------------------------------------------------------------------

async function renderFlagged() {
  const res = await api("/api/flagged?limit=100");
  fill($("flagged-list"), ...res.memories.map(card));
  $("flagged-summary").textContent = res.total ? `${res.total} flagged` : "nothing flagged";
}

// ---- sessions (live) -----------------------------------------------------------------------------

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", { text: c ?? "-" }))))));
}

function renderSessions(st) {
  const box = $("sessions");
  if (st.error) { fill(box, el("p", { class: "error", text: st.error })); return; }
  const o = st.owner;
  const owner = o
    ? table(["pid", "where", "epoch", "state", "heartbeat age", "since", "version"],
      [[o.pid, o.where, o.epoch, o.state, o.heartbeat_age_s === null ? "-" : `${o.heartbeat_age_s.toFixed(1)} s`,
        when(o.since), o.version ? `${o.version} (protocol ${o.protocol})` : "-"]])
    : el("p", { class: "muted", text: "No session owns the store now (the next call takes it)." });
  const me = st.this_process || {};
  fill(box,
    el("h2", { text: "Store" }),
    el("dl", { class: "fields" }, el("dt", { text: "home" }), el("dd", { text: st.home }),
      el("dt", { text: "chosen by" }), el("dd", { text: st.home_source }),
      el("dt", { text: "mode" }), el("dd", { text: st.mode })),
    st.versions && st.versions.problem ? el("p", { class: "warn-text", text: st.versions.problem }) : null,
    el("h2", { text: "Owner" }), el("div", { id: "owner" }, owner),
    el("h2", { text: "Standby" }),
    el("p", { id: "standby", text: st.standby ? `pid ${st.standby.pid ?? "?"} (model loaded, takes over at once)`
                                                : "none" }),
    el("h2", { text: "Waiters" }),
    st.waiters.length ? table(["pid", "since", "ticket"], st.waiters.map((w) => [w.pid, when(w.since), w.ticket]))
      : el("p", { text: "none" }),
    el("p", { class: "muted", text: `This page: pid ${me.pid}, ${me.role || "observer"}, Clarity ${me.version}. ` +
                                    `Updated ${new Date().toLocaleTimeString()}.` }));
}

function startLive() {
  stopLive();
  const badge = $("live");
  const source = new EventSource("/api/sessions/events");
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge ok"; };
  source.onmessage = (ev) => renderSessions(JSON.parse(ev.data));
  source.onerror = () => { badge.textContent = "reconnecting"; badge.className = "badge warn"; };
  state.events = source;
}

function stopLive() {
  if (state.events) { state.events.close(); state.events = null; }
}

// ---- stats ---------------------------------------------------------------------------------------

function bars(title, counts) {
  const entries = Object.entries(counts || {});
  if (!entries.length) return el("div", {}, el("h3", { text: title }), el("p", { class: "muted", text: "none" }));
  const max = Math.max(...entries.map(([, n]) => n));
  return el("div", { class: "bars" }, el("h3", { text: title }),
    entries.map(([name, n]) => {
      const bar = el("span", { class: "bar" });
      bar.style.width = `${Math.max(1, (100 * n) / max)}%`;
      return el("div", { class: "row" }, el("span", { class: "name", text: name }),
        el("span", { class: "track" }, bar), el("span", { class: "n", text: n }));
    }));
}

function chart(tl) {
  const width = 760, height = 220, left = 40, bottom = 28, top = 10;
  const buckets = tl.buckets || [];
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                            "aria-label": `memories created per ${tl.unit}` });
  if (!buckets.length) return root;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const plotW = width - left - 10, plotH = height - top - bottom;
  const step = plotW / buckets.length;
  root.append(svg("line", { x1: left, y1: top + plotH, x2: width - 10, y2: top + plotH, class: "axis" }));
  root.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end", class: "label" }, String(max)));
  root.append(svg("text", { x: left - 6, y: top + plotH, "text-anchor": "end", class: "label" }, "0"));
  buckets.forEach((b, i) => {
    const h = (plotH * b.count) / max;
    const w = Math.max(1, Math.min(48, step - 2));
    const rect = svg("rect", { x: left + i * step + (step - w) / 2, y: top + plotH - h, width: w, height: h,
                               class: "col" });
    rect.append(svg("title", {}, `${new Date(b.start).toLocaleString()}: ${b.count}`));
    root.append(rect);
  });
  const label = (i, anchor) => svg("text", { x: left + i * step + step / 2, y: height - 8, "text-anchor": anchor,
                                             class: "label" }, new Date(buckets[i].start).toLocaleDateString());
  root.append(label(0, "start"));
  if (buckets.length > 1) root.append(label(buckets.length - 1, "end"));
  return root;
}

async function renderStats() {
  const s = await api("/api/stats");
  const box = $("stats");
  if (!s.store_exists) { fill(box, el("p", { class: "muted", text: s.note })); return; }
  fill(box,
    el("div", { class: "totals" },
      el("div", { class: "total" }, el("strong", { text: s.total }), " memories"),
      el("div", { class: "total" }, el("strong", { text: bytes(s.storage_bytes) }), " on disk"),
      el("div", { class: "total" }, el("strong", { text: s.index_building ? "running" : "idle" }), " index build"),
      el("div", { class: "total" }, el("strong", { text: s.unindexed }), " unindexed")),
    el("p", { class: "muted", text: `engine ${s.engine}, model ${s.model} (${s.dims} dims), served by pid ` +
                                    `${s.served_by_pid}; ${s.home}` }),
    el("h3", { text: `Memories created per ${s.timeline.unit}` }), chart(s.timeline),
    el("div", { class: "columns" }, bars("By type", s.by_type),
      bars(`By tag (${s.tag_count} tags${s.tag_count > Object.keys(s.by_tag).length ? ", most used" : ""})`,
           s.by_tag),
      bars("By origin", s.by_origin)),
    s.partial ? el("p", { class: "muted", text: `Tags, origins and the chart cover the newest ${s.scanned}.` }) : null);
}

// ---- routing -------------------------------------------------------------------------------------

async function route() {
  showError("");
  const [, view, ...rest] = (location.hash || "#/memories").split("/");
  const name = view || "memories";
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === name || (name === "memory" && a.dataset.view === "memories"));
  }
  if (name !== "sessions") stopLive();
  try {
    if (name === "memories") await loadList();
    else if (name === "memory") await renderMemory(decodeURIComponent(rest.join("/")));
    else if (name === "flagged") await renderFlagged();
    else if (name === "sessions") startLive();
    else if (name === "stats") await renderStats();
  } catch (e) { showError(e.message); }
}

async function start() {
  try {
    const s = await api("/api/session");
    state.csrf = s.csrf;
    $("home").textContent = `${s.home} · Clarity ${s.version}`;
    $("home").title = `chosen by: ${s.home_source}`;
  } catch (e) { showError(e.message); return; }
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.offset = 0;
    if (location.hash !== "#/memories") location.hash = "#/memories"; else route();
  });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); route(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; route(); });
  window.addEventListener("hashchange", route);
  await route();
}

start();
