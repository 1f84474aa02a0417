// The console's only script (no inline script: CSP script-src 'self'). Pages work without
// it; the server checks every change. It asks before a destructive change, and keeps the
// dashboard and the events page live (server-sent events). Text goes in as textContent only.
"use strict";
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  const waiting = event.target.dataset && event.target.dataset.waiting;
  if (waiting) {
    const reader = event.target.elements.reader;
    const prompt = event.target.dataset.prompt || "Present the card now at";
    document.getElementById(waiting).textContent =
      `${prompt} ${reader ? reader.value : "the reader"}…`;
  }
});

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function eventRow(e) {
  const row = document.createElement("tr");
  cell(row, e.ts);
  cell(row, e.type);
  cell(row, e.door || e.reader || e.camera || e.device || "-");
  const details = cell(row, [e.method, e.reason, e.cause].filter(Boolean).join(" · "));
  if (e.person) {
    const code = document.createElement("code");
    code.className = "pseudonym";
    code.dataset.person = e.person;
    code.dataset.ts = e.ts;
    code.textContent = e.person;
    details.append(" ", code);
  }
  return row;
}

// The page's language for the gate's state words (data-words on #dashboard), else as sent.
function word(value) {
  const board = document.getElementById("dashboard");
  const words = board && board.dataset.words ? JSON.parse(board.dataset.words) : {};
  return Object.prototype.hasOwnProperty.call(words, value) ? words[value] : String(value);
}

function fillTable(id, values) {
  const body = document.querySelector(`#${id} tbody`);
  if (!body) return;
  const names = Object.keys(values).sort();
  if (names.length === 0) return;
  body.replaceChildren(...names.map((name) => {
    const row = document.createElement("tr");
    row.dataset.key = name;
    cell(row, name);
    const state = cell(row, word(values[name]));
    state.className = `state state-${values[name]}`;
    return row;
  }));
}

// Durations as h:mm:ss and times as the pages show them (the same in every language).
function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(seconds));
  const two = (n) => String(n).padStart(2, "0");
  return `${Math.floor(s / 3600)}:${two(Math.floor(s / 60) % 60)}:${two(s % 60)}`;
}

function when(ts) {
  if (ts === null || ts === undefined) return "-";
  return `${new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

function rosterRow(g) {
  const row = document.createElement("tr");
  row.dataset.key = g.gate;
  if (g.overdue) row.className = "overdue";
  else if (g.behind) row.className = "behind";
  cell(row, g.gate).setAttribute("translate", "no");
  [g.applied, g.version, g.behind].forEach((n) => cell(row, String(n)));
  cell(row, age(g.behind_for_s));
  const ack = cell(row, when(g.last_ack));
  if (g.error) {
    const err = document.createElement("span");
    err.className = "error";
    err.lang = "en";
    err.textContent = g.error;
    ack.append(" ", err);
  }
  const pending = cell(row, g.pending.length ? "" : "-");
  g.pending.forEach((p, i) => {
    const item = document.createElement("span");
    if (p.overdue) item.className = "overdue";
    item.textContent = `#${p.change} · ${age(p.age_s)}${p.overdue ? ` (${word("overdue")})` : ""}`;
    pending.append(...(i ? [", ", item] : [item]));
  });
  return row;
}

function showRoster(r) {
  const section = document.getElementById("roster");
  if (!section || !r || section.dataset.role !== r.role) return;
  const set = (id, v) => { const el = document.getElementById(id); if (el) el.textContent = v; };
  if (r.role === "gate") {
    set("roster-applied", String(r.applied));
    set("roster-applied-at", when(r.applied_at));
    return;
  }
  const body = section.querySelector("tbody");
  if (body && r.gates.length) body.replaceChildren(...r.gates.map(rosterRow));
}

function showStatus(d) {
  fillTable("doors", d.doors);
  fillTable("readers", d.readers);
  fillTable("cameras", d.cameras);
  const set = (id, v) => { const el = document.getElementById(id); if (el) el.textContent = v; };
  set("broker", word(d.broker));
  set("outbox", d.outbox === null ? "-" : String(d.outbox));
  set("storage", word(d.storage));
  set("granted", String(d.today.granted));
  set("denied", String(d.today.denied));
  showRoster(d.roster);
}

function passes(table, e) {
  const f = table.dataset;
  if (f.type && !String(e.type).startsWith(f.type)) return false;
  if (f.door && e.door !== f.door) return false;
  if (f.person && e.person !== f.person) return false;
  return !f.since || String(e.ts) >= f.since;
}

function goLive(source) {
  const state = document.getElementById("live-state");
  const table = document.getElementById("events") || document.getElementById("live-events");
  const stream = new EventSource(source.dataset.stream);
  const said = (key, fallback) => { if (state) state.textContent = state.dataset[key] || fallback; };
  stream.addEventListener("open", () => said("live", "Live updates: on"));
  stream.addEventListener("error", () => said("off", "Live updates: reconnecting…"));
  stream.addEventListener("status", (m) => showStatus(JSON.parse(m.data)));
  stream.addEventListener("event", (m) => {
    const e = JSON.parse(m.data);
    if (!table || !passes(table, e)) return;
    const body = table.querySelector("tbody");
    body.querySelectorAll("tr.empty").forEach((r) => r.remove());
    body.prepend(eventRow(e));
    while (body.rows.length > 200) body.deleteRow(-1);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const source = document.querySelector("[data-stream]");
  if (source) goLive(source);
  const form = document.getElementById("resolve");
  if (form) {
    document.addEventListener("click", (event) => {
      const code = event.target.closest && event.target.closest("code.pseudonym");
      if (!code) return;
      form.elements.pseudonym.value = code.dataset.person;
      form.elements.ts.value = code.dataset.ts;
      form.elements.reason.focus();
    });
  }
});
