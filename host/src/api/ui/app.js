// healer dashboard. No framework, no build step, nothing loaded from
// elsewhere: every view reads the host's own API (the token, when the viewer
// enters one, goes in the Authorization header) and builds the DOM with
// textContent, never with markup from data.
"use strict";

// The states and kinds come from the host (GET /ui/meta), in lifecycle order.
let meta = { mode: "", kinds: [], states: [] };

// ---------- small helpers ----------

/** An element: h("td", {class: "num"}, "3", child, …). */
function h(tag, attrs, ...children) {
  const svg = ["svg", "rect", "line", "polyline", "text", "g", "title", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A time in the viewer's zone, UTC on hover. */
function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: d.toISOString().replace(".000Z", "Z") + " (UTC)" },
    d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }));
}

function ms(v) {
  if (v === undefined || v === null) return "—";
  if (v < 1) return `${Math.round(v * 1000)} µs`;
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 120000) return `${(v / 1000).toFixed(1)} s`;
  if (v < 7200000) return `${(v / 60000).toFixed(1)} min`;
  return `${(v / 3600000).toFixed(1)} h`;
}

function stateTag(s) { return h("span", { class: `st st-${s}` }, s); }

function table(head, rows, numeric) {
  const num = new Set(numeric || []);
  return h("table", {},
    h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { class: num.has(i) ? "num" : null, scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: num.has(i) ? "num" : null }, c))))
      : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "nothing yet"))));
}

/** Replaces a container's content (skipping absent parts). */
function show(el, ...kids) {
  el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
}

/** A two-column table of (name, value) pairs, without a header. */
function kv(pairs) {
  return h("table", { class: "kv" }, h("tbody", {}, pairs.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))));
}

function section(title, ...body) { return h("section", {}, h("h2", {}, title), ...body); }

function banner(text, info) {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = info ? "info" : "";
}

// ---------- API ----------

const token = {
  get: () => sessionStorage.getItem("healer-token") || "",
  set: (t) => (t ? sessionStorage.setItem("healer-token", t) : sessionStorage.removeItem("healer-token")),
};

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function headers(extra) {
  const hd = Object.assign({}, extra || {});
  if (token.get()) hd.Authorization = `Bearer ${token.get()}`;
  return hd;
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = headers(o.headers);
  const res = await fetch(path, o);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!res.ok) {
    const msg = (body && body.message) || `${res.status} ${res.statusText}`;
    if (res.status === 401) showToken(`The service needs a token: ${msg}`);
    throw new ApiError(res.status, body && body.code, msg);
  }
  return body;
}

function query(params) {
  const q = Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null);
  return q.length ? "?" + q.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&") : "";
}

// ---------- header: mode, kill switch, token ----------

function showMode(mode) {
  const m = document.getElementById("mode");
  m.className = `badge mode-${mode}`;
  m.textContent = mode === "live" ? "LIVE: actions run" : "DRY RUN: nothing is executed";
}

function showSwitch(state) {
  const s = document.getElementById("switch");
  s.className = `badge switch-${state}`;
  s.textContent = state === "on" ? "KILL SWITCH ON: every action denied" : "kill switch off";
}

function showToken(why) {
  const p = document.getElementById("token-panel");
  p.hidden = false;
  if (why) banner(why);
  document.getElementById("token-input").focus();
}

function wireToken() {
  const p = document.getElementById("token-panel");
  const input = document.getElementById("token-input");
  document.getElementById("token-button").addEventListener("click", () => showToken());
  document.getElementById("token-save").addEventListener("click", () => {
    token.set(input.value.trim()); input.value = ""; p.hidden = true; banner(""); route();
  });
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") document.getElementById("token-save").click(); });
  document.getElementById("token-clear").addEventListener("click", () => {
    token.set(""); input.value = ""; p.hidden = true; route();
  });
  document.getElementById("token-cancel").addEventListener("click", () => { p.hidden = true; });
}

// ---------- charts (hand-drawn SVG) ----------

/** Daily trend: bars of closed incidents, lines of MTTR p50 and p90. */
function trendChart(raw) {
  const points = fillDays(raw);
  const years = new Set(points.map((p) => p.day.slice(0, 4))).size > 1;
  const W = 640, H = 200, L = 54, R = 40, T = 10, B = 30;
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "MTTR p50 and p90 per day, with incidents closed per day" });
  if (!points.length) {
    svg.append(h("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no closed incidents in this window"));
    return svg;
  }
  const n = points.length, bw = (W - L - R) / n;
  const maxMs = Math.max(1, ...points.map((p) => p["mttr-p90-ms"] || p["mttr-p50-ms"] || 0));
  const maxN = Math.max(1, ...points.map((p) => p.closed));
  const x = (i) => L + bw * i + bw / 2;
  const y = (v) => T + (H - T - B) * (1 - v / maxMs);
  const yn = (v) => (H - T - B) * (v / maxN);
  svg.append(h("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#c0c6ce" }));
  svg.append(h("text", { x: L - 6, y: T + 8, "text-anchor": "end" }, ms(maxMs)));
  svg.append(h("text", { x: L - 6, y: H - B, "text-anchor": "end" }, "0"));
  svg.append(h("text", { x: W - R + 4, y: T + 8 }, `${maxN}`));
  points.forEach((p, i) => {
    const bh = yn(p.closed);
    svg.append(h("rect", { x: x(i) - bw * 0.35, y: H - B - bh, width: bw * 0.7, height: bh, fill: "#dde3ea" },
      h("title", {}, `${p.day}: ${p.closed} closed, ${p.healed} healed, ${p.escalated} escalated; p50 ${ms(p["mttr-p50-ms"])}, p90 ${ms(p["mttr-p90-ms"])}`)));
    if (n <= 16 || i % Math.ceil(n / 8) === 0) {
      svg.append(h("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, years ? p.day : p.day.slice(5)));
    }
  });
  for (const [key, color] of [["mttr-p50-ms", "#1f5fbf"], ["mttr-p90-ms", "#a35b00"]]) {
    const pts = points.map((p, i) => (p[key] == null ? null : `${x(i)},${y(p[key])}`)).filter(Boolean);
    if (pts.length) svg.append(h("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    points.forEach((p, i) => {
      if (p[key] != null) svg.append(h("circle", { cx: x(i), cy: y(p[key]), r: 3, fill: color }));
    });
  }
  return svg;
}

/** The days between the first and last point with none closed filled in,
 * so the axis is time (up to 120 days; a longer span is left as it is). */
function fillDays(points) {
  if (points.length < 2) return points;
  const day = (d) => Date.parse(`${d}T00:00:00Z`);
  const first = day(points[0].day), last = day(points[points.length - 1].day);
  const span = Math.round((last - first) / 86400000);
  if (span > 120) return points;
  const by = new Map(points.map((p) => [p.day, p]));
  const out = [];
  for (let t = first; t <= last; t += 86400000) {
    const d = new Date(t).toISOString().slice(0, 10);
    out.push(by.get(d) || { day: d, closed: 0, healed: 0, escalated: 0, "mttr-p50-ms": null, "mttr-p90-ms": null });
  }
  return out;
}

/** Horizontal bars: [{label, value, title}]. */
function bars(items, unit) {
  const W = 640, row = 24, L = 190, R = 70;
  const H = Math.max(row, items.length * row) + 6;
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "bar chart" });
  if (!items.length) {
    svg.append(h("text", { x: 8, y: 16 }, "nothing yet"));
    return svg;
  }
  const max = Math.max(1, ...items.map((i) => i.value || 0));
  items.forEach((it, k) => {
    const y = k * row + 4, w = ((W - L - R) * (it.value || 0)) / max;
    svg.append(h("text", { x: L - 8, y: y + 14, "text-anchor": "end" }, it.label.length > 30 ? it.label.slice(0, 29) + "…" : it.label));
    svg.append(h("rect", { x: L, y, width: Math.max(1, w), height: row - 8, fill: it.color || "#1f5fbf" },
      h("title", {}, it.title || `${it.label}: ${it.value}`)));
    svg.append(h("text", { x: L + w + 6, y: y + 14 }, unit ? unit(it.value) : `${it.value}`));
  });
  return svg;
}

function seriesBars(series, labelOf, color) {
  return bars(series.map((s) => ({ label: labelOf(s.labels), value: s.value, color }))
    .sort((a, b) => b.value - a.value));
}

// ---------- views ----------

const WINDOWS = [["1", "24 hours"], ["7", "7 days"], ["30", "30 days"], ["90", "90 days"]];

function sinceOf(days) {
  return new Date(Date.now() - Number(days) * 86400000).toISOString();
}

function windowPicker(current, onChange, custom) {
  const sel = h("select", { id: "window", "aria-label": "Window", onchange: (e) => onChange(e.target.value) },
    custom ? h("option", { value: "", selected: true }, `since ${new Date(custom).toLocaleString()}`) : null,
    WINDOWS.map(([v, l]) => h("option", { value: v, selected: !custom && v === current }, l)));
  return h("label", { class: "legend" }, "Window ", sel);
}

async function overview(main, params) {
  // ?since=RFC3339 for a window of one's own (the picker offers the usual ones).
  const days = params.get("days") || "7", custom = params.get("since");
  const ov = await api(`/overview${query({ since: custom || sinceOf(days) })}`);
  showMode(ov.mode);
  showSwitch(ov["kill-switch"]);
  const o = ov.open, w = ov.window;
  const card = (id, n, l, alert) => h("div", { class: `card${alert ? " alert" : ""}`, id }, h("div", { class: "n" }, n), h("div", { class: "l" }, l));
  show(main, 
    h("h1", {}, "Overview ", windowPicker(days, (v) => { location.hash = `#/?days=${v}`; }, custom)),
    h("div", { class: "cards", id: "open-now" },
      card("open-total", o.total, "open now", o.total > 0),
      card("open-detected", o.detected, "detected"),
      card("open-decided", o.decided, "decided"),
      card("open-acting", o.acting, "acting"),
      card("open-verifying", o.verifying, "verifying")),
    h("div", { class: "cards", id: "in-window" },
      card("w-count", w.count, "incidents in window"),
      card("w-healed", w.healed, "healed"),
      card("w-escalated", w.escalated, "escalated to humans", w.escalated > 0),
      card("w-other", w.other, "denied or ignored"),
      card("w-p50", ms(w["mttr-p50-ms"]), "MTTR p50"),
      card("w-p90", ms(w["mttr-p90-ms"]), "MTTR p90")),
    section("MTTR trend",
      h("p", { class: "legend" }, h("span", { class: "key-p50" }, "● p50 "), h("span", { class: "key-p90" }, "● p90 "),
        h("span", { class: "key-count" }, "▮ incidents closed per day (UTC)")),
      trendChart(ov.trend)),
    h("div", { class: "grid2" },
      section("By kind", statsTable(ov["by-kind"], "kind", "by-kind")),
      section("Healed by healer vs recovered without it", statsTable(ov["by-healer"], "who", "by-healer"))),
    h("p", { class: "muted" }, "Counted by this replica since it started at ", time(ov.replica["started-at"]),
      " (each replica counts its own; /metrics has them for Prometheus)."),
    h("div", { class: "grid2" },
      section("Actions by result", seriesBars(ov.replica.actions, (l) => `${l.action} ${l.result}`)),
      section("Denials by rule", seriesBars(ov.replica.denials, (l) => l.rule, "#b3261e")),
      section("Signals by outcome", seriesBars(ov.replica.signals, (l) => `${l.origin} ${l.outcome}`, "#5b6470")),
      section("Decisions", seriesBars(ov.replica.decisions, (l) => `${l.policy}@${l.version} ${l.mode} ${l.result}`, "#1c7c3a"))),
  );
}

function statsTable(rows, key, id) {
  const t = table([key, "incidents", "healed", "open", "MTTR mean", "p50", "p90"],
    rows.map((r) => [r.key, r.count, r.healed, r.open, ms(r["mttr-mean-ms"]), ms(r["mttr-p50-ms"]), ms(r["mttr-p90-ms"])]),
    [1, 2, 3, 4, 5, 6]);
  t.id = id;
  return t;
}

// Incidents: a filtered list kept live by the stream.
// `gen` counts list views: a page read that a newer view (a filter change,
// a resync) outlived is dropped rather than written into the wrong list.
const live = { abort: null, rows: new Map(), filters: {}, gen: 0, reload: null };

function keeps(f, r) {
  const i = r.incident;
  if (f.state && r.state !== f.state) return false;
  if (f.kind && i.kind !== f.kind) return false;
  if (f.resource && i.resource.id !== f.resource && !(i.group && i.group.id === f.resource)) return false;
  if (f.policy && !(r.provenance && r.provenance.policy.name === f.policy)) return false;
  if (f.since && new Date(i["detected-at"]) < new Date(f.since)) return false;
  if (f.until && new Date(i["detected-at"]) >= new Date(f.until)) return false;
  return true;
}

function incidentRow(r, fresh) {
  const i = r.incident, p = r.provenance;
  return h("tr", { "data-id": i.id, "data-version": r.version, class: fresh ? "fresh" : null },
    h("td", {}, time(i["detected-at"])),
    h("td", {}, h("a", { href: `#/incident/${encodeURIComponent(i.id)}` }, i.kind)),
    h("td", { class: "mono" }, i.resource.id),
    h("td", {}, stateTag(r.state)),
    h("td", { class: "hide-narrow" }, p ? `${p.policy.name}@${p.policy.version}` : "—"),
    h("td", { class: "num" }, ms(r["mttr-ms"])));
}

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function incidents(main, params) {
  const f = {};
  for (const k of ["state", "kind", "resource", "policy", "since", "until"]) f[k] = params.get(k) || "";
  live.filters = f;
  live.rows = new Map();
  const gen = ++live.gen;
  const tbody = h("tbody", { id: "incident-rows" });
  const more = h("button", { type: "button", id: "more", hidden: true }, "Older incidents");
  const status = h("p", { class: "legend", id: "live-status", "aria-live": "polite" }, "connecting to the live feed…");
  const sel = (name, values) => h("select", { name, id: `f-${name}` }, h("option", { value: "" }, "any"),
    values.map((v) => h("option", { value: v, selected: v === f[name] }, v)));
  const form = h("form", { class: "filters", id: "filters", onsubmit: (e) => {
    e.preventDefault();
    const d = new FormData(e.target), next = {};
    for (const [k, v] of d.entries()) if (v) next[k] = (k === "since" || k === "until") ? new Date(v).toISOString() : v;
    location.hash = `#/incidents${query(next)}`;
  } },
  h("label", {}, "State", sel("state", meta.states)),
  h("label", {}, "Kind", sel("kind", meta.kinds)),
  h("label", {}, "Resource", h("input", { name: "resource", id: "f-resource", value: f.resource, placeholder: "id or group" })),
  h("label", {}, "Policy", h("input", { name: "policy", id: "f-policy", value: f.policy })),
  h("label", {}, "Since", h("input", { name: "since", id: "f-since", type: "datetime-local", value: localInput(f.since) })),
  h("label", {}, "Until", h("input", { name: "until", id: "f-until", type: "datetime-local", value: localInput(f.until) })),
  h("button", { type: "submit", id: "apply" }, "Apply"),
  h("a", { href: "#/incidents" }, "Clear"));
  show(main, h("h1", {}, "Incidents"), section("Filter", form, status),
    h("section", {}, h("table", { id: "incidents" },
      h("thead", {}, h("tr", {}, ["Detected", "Kind", "Resource", "State", "Policy", "MTTR"].map((c, i) =>
        h("th", { scope: "col", class: i === 4 ? "hide-narrow" : i === 5 ? "num" : null }, c)))), tbody), more));
  // The stream first, then the list: every change after the stream opens
  // arrives on it, and a record in both is kept at its newest version.
  await openStream(status, tbody);
  let cursor = null;
  const page = async () => {
    const q = Object.assign({}, f, { limit: 100 });
    if (cursor) q.cursor = cursor;
    const p = await api(`/incidents${query(q)}`);
    if (gen !== live.gen) return;
    for (const r of p.items) upsert(tbody, r, false, true);
    cursor = p.next;
    more.hidden = !cursor;
  };
  // After a resync: the list read again, the filters and the stream kept.
  live.reload = async () => {
    if (gen !== live.gen) return;
    tbody.replaceChildren();
    live.rows = new Map();
    cursor = null;
    await page();
  };
  more.addEventListener("click", () => page().catch(fail));
  await page();
}

/** Puts a record in the list (new ones on top, newer versions in place). */
function upsert(tbody, r, fresh, append) {
  const id = r.incident.id, old = live.rows.get(id);
  if (old && Number(old.dataset.version) >= r.version) return;
  const row = incidentRow(r, fresh);
  if (old) old.replaceWith(row);
  else if (append) tbody.append(row);
  else tbody.prepend(row);
  live.rows.set(id, row);
}

/** Opens the live feed; `again` after a drop or a refusal, when changes
 * made meanwhile were not streamed, so the list is read again. */
async function openStream(status, tbody, again) {
  if (live.abort) live.abort.abort();
  const ctl = new AbortController();
  live.abort = ctl;
  let res;
  try {
    res = await fetch("/incidents/stream", { headers: headers({ Accept: "text/event-stream" }), signal: ctl.signal });
    } catch (e) {
    if (ctl.signal.aborted) return;
    status.textContent = `live feed unavailable: ${e.message}; retrying…`;
    setTimeout(() => { if (live.abort === ctl) openStream(status, tbody, true); }, 2000);
    return;
  }
  if (!res.ok) {
    status.textContent = `live feed unavailable (${res.status})`;
    if (res.status === 401) showToken("The service needs a token.");
    else {
      // A busy or stopping replica (503): try again, as after a drop.
      status.textContent += "; retrying…";
      setTimeout(() => { if (live.abort === ctl) openStream(status, tbody, true); }, 2000);
    }
    return;
  }
  status.textContent = "live: new incidents appear as they are recorded";
  status.dataset.live = "on";
  if (again && live.reload) live.reload().catch(fail);
  const reader = res.body.getReader(), dec = new TextDecoder();
  (async () => {
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          onEvent(block, tbody);
        }
      }
    } catch (_) { /* aborted or dropped */ }
    if (live.abort === ctl && !ctl.signal.aborted) {
      status.textContent = "live feed dropped; reconnecting…";
      status.dataset.live = "off";
      setTimeout(() => { if (live.abort === ctl) openStream(status, tbody, true); }, 1000);
    }
  })();
}

function onEvent(block, tbody) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (event === "incident") {
    let r;
    try { r = JSON.parse(data.join("\n")); } catch (_) { return; }
    if (keeps(live.filters, r)) upsert(tbody, r, true, false);
    else if (live.rows.has(r.incident.id)) {
      // It no longer matches the filters (its state moved on).
      live.rows.get(r.incident.id).remove();
      live.rows.delete(r.incident.id);
    }
  } else if (event === "resync" && live.reload) {
    live.reload().catch(fail);
  }
}

async function incident(main, id) {
  const r = await api(`/incidents/${encodeURIComponent(id)}`);
  const i = r.incident;
  const steps = new Map((r.steps || []).map((s) => [s.index, s]));
  const base = r["step-base"] || 0;
  show(main, 
    h("h1", {}, `${i.kind} on `, h("span", { class: "mono" }, i.resource.id), " ", stateTag(r.state)),
    section("Timeline", h("ol", { class: "timeline", id: "timeline" }, meta.states.map((s) => {
      const at = r.timestamps[s];
      if (!at && ["escalated", "denied", "ignored"].includes(s) && r.state !== s) return null;
      return h("li", { class: at ? null : "missing", "data-stage": s }, h("span", { class: "s" }, s), at ? time(at) : "—");
    })), h("p", {}, "MTTR: ", h("strong", { id: "mttr" }, ms(r["mttr-ms"]))), r.note ? h("p", {}, "Note: ", r.note) : null),
    section("Signal", kv([
      ["id", h("span", { class: "mono" }, i.id)], ["source", i.source], ["reason", i.reason],
      ["resource", h("span", { class: "mono" }, `${i.resource.kind || ""} ${i.resource.id}`)],
      ["group", i.group ? h("span", { class: "mono" }, `${i.group.kind || ""} ${i.group.id}`) : "—"],
      ["detected", time(i["detected-at"])],
      ...Object.entries(i.detail || {}).map(([k, v]) => [k, h("span", { class: "mono" }, v)])])),
    section("Decision", provenance(r.provenance, r.verdicts || [], steps, base, "decision")),
    (r["also-decided"] || []).length ? section("Also decided (shadow and other routed policies, never executed)",
      ...(r["also-decided"].map((p) => provenance(p, [], new Map(), 0, "shadow")))) : null,
    ...(r.rounds || []).map((round, k) => section(`Earlier round ${k + 1} (verification failed: ${round["verify-seen"]})`,
      provenance(round.provenance, round.verdicts || [], new Map((round.steps || []).map((s) => [s.index, s])),
        firstStep(round.verdicts || []), `round-${k}`))),
  );
}

/** A round's step base: its verdicts are indexed from it. */
function firstStep(verdicts) {
  return verdicts.length ? Math.min(...verdicts.map((v) => v.step)) : 0;
}

function provenance(p, verdicts, steps, base, id) {
  if (!p) return h("p", { class: "muted", id }, "no policy decided (yet)");
  const d = p.decision || {};
  const plan = d.Ok, err = d.Err;
  const head = table(["policy", "version", "sha256", "input hash", "fuel", "duration"], [[
    p.policy.name, p.policy.version, h("span", { class: "mono", title: p.policy.sha256 }, p.policy.sha256.slice(0, 16) + "…"),
    h("span", { class: "mono", title: p["input-hash"] }, String(p["input-hash"]).slice(0, 16) + "…"),
    p["fuel-used"], ms(p["duration-us"] / 1000)]], [4, 5]);
  const verdictOf = new Map(verdicts.map((v) => [v.step, v]));
  const body = err !== undefined
    ? h("p", { class: "st-denied" }, `policy error: ${err}`)
    : h("div", {}, h("p", {}, plan.summary || ""), table(["#", "action", "target", "why", "verdict", "executed", "created"],
      plan.steps.map((s, k) => {
        const v = verdictOf.get(base + k);
        const e = steps.get(base + k);
        return [k, s.action, h("span", { class: "mono" }, target(s)), s.reason,
          v ? h("span", { class: `v-${v.verdict}` }, `${v.verdict}${v.rule ? ` (${v.rule})` : ""}: ${v.reason}`) : "—",
          e ? executed(e) : "—", e && e.created ? h("span", { class: "mono" }, e.created.join(", ")) : "—"];
      }), []));
  return h("div", { id, class: "provenance" }, head, body);
}

function target(step) {
  const skip = new Set(["action", "reason"]);
  return Object.entries(step).filter(([k]) => !skip.has(k)).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function executed(e) {
  const res = e.result;
  const label = typeof res === "string" ? res : Object.entries(res).map(([k, v]) => `${k}: ${v}`).join("");
  return h("span", {}, h("span", { class: res === "succeeded" ? "v-approved" : typeof res === "object" ? "v-denied" : "" }, label),
    " ", time(e["ended-at"] || e["started-at"]),
    (e.calls || []).length ? h("details", {}, h("summary", {}, `${e.calls.length} call(s)`), h("pre", {}, JSON.stringify(e.calls, null, 2))) : null);
}

async function mttr(main, params) {
  const days = params.get("days") || "30", by = params.get("by") || "kind", custom = params.get("since");
  const since = custom || sinceOf(days);
  const [stats, healer] = await Promise.all([
    api(`/stats${query({ by, since })}`),
    api(`/stats${query({ by: "healer", since })}`)]);
  const byPicker = h("select", { id: "by", "aria-label": "Group by", onchange: (e) => { location.hash = `#/mttr${query({ by: e.target.value, days, since: custom })}`; } },
    ["kind", "policy", "action", "healer"].map((b) => h("option", { value: b, selected: b === by }, b)));
  const rows = stats.rows;
  show(main, 
    h("h1", {}, "MTTR"),
    h("p", {}, h("label", { class: "legend" }, "By ", byPicker), " ", windowPicker(days, (v) => { location.hash = `#/mttr?by=${by}&days=${v}`; }, custom)),
    section(`MTTR p50 by ${by}`, bars(rows.filter((r) => r["mttr-p50-ms"] != null)
      .map((r) => ({ label: r.key, value: r["mttr-p50-ms"], title: `${r.key}: p50 ${ms(r["mttr-p50-ms"])}, p90 ${ms(r["mttr-p90-ms"])}` })), ms)),
    section(`By ${by}`, statsTable(rows, by, "stats")),
    section("Healed by healer vs recovered without it", statsTable(healer.rows, "who", "stats-healer")),
    h("p", { class: "muted" }, "Percentiles and the maximum are read off a histogram (within 19 %); the mean is exact."));
}

async function policies(main) {
  const [list, sw] = await Promise.all([api("/policies"), api("/kill-switch")]);
  const admin = !!token.get();
  const act = async (what, path, opts) => {
    if (!confirm(what + "?")) return;
    try {
      await api(path, opts);
      banner(`${what}: done`, true);
      route();
    } catch (e) { banner(`${what} failed: ${e.message}`); }
  };
  const file = h("input", { type: "file", id: "policy-file", accept: ".wasm,application/wasm", disabled: !admin });
  const role = h("select", { id: "policy-role", disabled: !admin }, h("option", { value: "active" }, "active"), h("option", { value: "shadow" }, "shadow"));
  const push = h("button", { type: "button", id: "policy-push", disabled: !admin, onclick: async () => {
    const f = file.files[0];
    if (!f) { banner("Choose a component (.wasm) first."); return; }
    await act(`Push ${f.name} (${f.size} bytes) as ${role.value}`, `/policies${role.value === "shadow" ? "?role=shadow" : ""}`,
      { method: "POST", headers: { "Content-Type": "application/wasm" }, body: await f.arrayBuffer() });
  } }, "Push");
  const on = sw.state === "on";
  show(main, 
    h("h1", {}, "Policies"),
    admin ? null : h("p", { class: "muted", id: "read-only" }, "Read-only: enter the admin token (Token, top right) to change policies."),
    section("Kill switch", h("p", {}, "The store's kill switch is ", h("strong", { id: "switch-state" }, sw.state),
      on ? ": every mutating step is denied on every replica." : "."),
    h("button", { type: "button", id: "switch-toggle", class: on ? null : "danger", disabled: !admin,
      onclick: () => act(on ? "Turn the kill switch off" : "Turn the kill switch on (deny every action)", "/kill-switch",
        { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ state: on ? "off" : "on" }) }) },
    on ? "Turn off" : "Turn on")),
    section("Swap in a version", h("p", {}, "Upload a policy component; it is checked, compiled and swapped in on every replica without losing a decision."),
      h("div", { class: "actions" }, file, role, push)),
    ...list.policies.map((p) => {
      const ptr = (list.set.policies || {})[p.name] || {};
      const name = encodeURIComponent(p.name);
      const agreement = ptr.shadow ? h("p", { class: "agreement" }, "shadow agreement: reading…") : null;
      if (agreement) {
        api(`/stats/shadow${query({ policy: p.name })}`).then((st) => {
          const s = st.summary;
          agreement.textContent = s.total
            ? `shadow ${s.candidate.version} agrees with the active version on ${s.same} of ${s.total} incidents (${Math.round((100 * s.same) / s.total)}%) in the last 7 days; ${s.changed} changed, ${s["new-errors"]} new errors`
            : "shadow agreement: no incident both versions decided in the last 7 days";
        }).catch((e) => { agreement.textContent = `shadow agreement unavailable: ${e.message}`; });
      }
      return h("section", { "data-policy": p.name }, h("h2", {}, p.name), agreement,
        h("p", { class: "legend" }, `handles ${p.handles.join(", ")}`, ptr["changed-by"] ? `; last changed by ${ptr["changed-by"]} at ` : "",
          ptr["changed-at"] ? time(ptr["changed-at"]) : ""),
        table(["version", "role", "sha256", "world", "size", "loaded", "decisions", "errors", ""],
          p.versions.slice().reverse().map((v) => [v.version, v.role ? h("strong", { class: `role-${v.role}` }, v.role) : "—",
            h("span", { class: "mono", title: v.sha256 }, v.sha256.slice(0, 16) + "…"), v.world, `${(v.size / 1024).toFixed(0)} KiB`,
            time(v["uploaded-at"]), v.decisions, v.errors,
            v.role ? "" : h("button", { type: "button", disabled: !admin, onclick: () => act(`Run ${p.name}@${v.version} in shadow`,
              `/policies/${name}/shadow`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sha256: v.sha256 }) }) }, "Shadow")]),
          [4, 6, 7]),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "rollback", disabled: !admin, onclick: () => act(`Roll ${p.name} back to its previous version`, `/policies/${name}/rollback`, { method: "POST" }) }, "Roll back"),
          ptr.shadow ? h("button", { type: "button", disabled: !admin, onclick: () => act(`Make ${p.name}'s shadow version active`, `/policies/${name}/activate`, { method: "POST" }) }, "Activate shadow") : null,
          ptr.shadow ? h("button", { type: "button", disabled: !admin, onclick: () => act(`Stop ${p.name}'s shadow`, `/policies/${name}/shadow`, { method: "DELETE" }) }, "Stop shadow") : null));
    }));
}

// ---------- router ----------

function fail(e) {
  if (e && e.status === 401) return;
  banner(`Could not load: ${e && e.message ? e.message : e}`);
}

async function route() {
  const main = document.getElementById("main");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = hash.split("?");
  const params = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  const name = parts[0] || "overview";
  if (name !== "incidents" && live.abort) { live.abort.abort(); live.abort = null; }
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.route === (name === "incident" ? "incidents" : name));
  try {
    if (name === "overview") await overview(main, params);
    else if (name === "incidents") await incidents(main, params);
    else if (name === "incident") await incident(main, decodeURIComponent(parts.slice(1).join("/")));
    else if (name === "mttr") await mttr(main, params);
    else if (name === "policies") await policies(main);
    else show(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Overview")));
    document.body.dataset.view = name;
    if (name !== "overview") api("/kill-switch").then((k) => showSwitch(k.state)).catch(() => {});
  } catch (e) { fail(e); document.body.dataset.view = `${name}-failed`; }
}

window.addEventListener("hashchange", () => { banner(""); route(); });
window.addEventListener("DOMContentLoaded", async () => {
  wireToken();
  try {
    meta = await api("/ui/meta");
    showMode(meta.mode);
  } catch (e) { banner(`Could not reach the service: ${e.message}`); }
  route();
});
