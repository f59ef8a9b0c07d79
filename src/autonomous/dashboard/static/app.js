// The dashboard page: the board, the task page, live events. No framework, no build step:
// the server ships this file as is. Every text from the server goes in as text, never HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const READ_ONLY = document.querySelector('meta[name="read-only"]').content === "true";
const COLUMN_NAMES = { todo: "To do", in_progress: "In progress", blocked: "Blocked", in_review: "In review",
                       done: "Done", canceled: "Canceled" };
const PRIORITIES = ["urgent", "high", "normal", "low"];
const REFRESHING = new Set(["session_start", "session_end", "task_claimed", "task_recorded", "outcome",
                            "verification", "tool_use", "usage", "checkpoint"]);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const money = (v) => "$" + Number(v || 0).toFixed(4);
const when = (iso) => (iso ? String(iso).replace("T", " ").slice(0, 19) : "");

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 5000);
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...(options || {}) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body || {}),
  });
}

async function act(ref, what, body) {
  try {
    const result = await post(`/api/tasks/${encodeURIComponent(ref)}/${what}`, body);
    toast(`${result.task.key}: ${result.task.status}, priority ${result.task.priority}`);
    await refresh();
  } catch (err) {
    toast(String(err.message || err));
  }
}

// -- header, session, workers --------------------------------------------------------------
// Cost so far of each task in flight, from its usage events: the runner's status has the
// backend's own figure, which the Claude Code CLI states only when a run ends.
const liveCost = new Map();

function renderStatus(status) {
  const runner = document.getElementById("runner");
  runner.textContent = `runner: ${status.state}`;
  runner.className = `pill ${status.state}`;
  const m = status.metrics || {};
  document.getElementById("session-cost").textContent =
    m.cost_usd !== null && m.cost_usd !== undefined
      ? `session ${money(m.cost_usd)} · total ${money(m.total_cost_usd)}` : `total ${money(m.total_cost_usd)}`;
  const workers = document.getElementById("workers");
  workers.replaceChildren();
  if (!status.current || !status.current.length) {
    workers.append(el("p", { class: "muted" }, "no task in flight"));
  } else {
    workers.append(el("table", {},
      el("tr", {}, ["Task", "Doing", "Tool", "Turns", "Cost", "Elapsed"].map((h) => el("th", {}, h))),
      status.current.map((c) => el("tr", { "data-key": c.key },
        el("td", {}, el("a", { href: `#/task/${encodeURIComponent(c.key)}` }, c.key), " ", c.title),
        el("td", {}, c.phase), el("td", {}, c.tool || "-"), el("td", {}, c.turns),
        el("td", {}, money(Math.max(c.cost_usd, liveCost.get(c.key) || 0))),
        el("td", {}, c.elapsed_s === null ? "-" : `${Math.round(c.elapsed_s)}s`)))));
  }
  if (status.tasks) renderProgress(status.tasks.completed, status.tasks.total);
  const r = status.runner || {};
  document.getElementById("meta").dataset.state = status.state;
  renderMeta.session = [
    r.session_id ? `session ${r.session_id}` : "no session yet",
    `state ${status.state}`,
    r.stop_reason && status.state !== "running" ? `stopped: ${r.stop_reason}` : null,
  ].filter(Boolean);
  renderMeta();
}

function renderMeta() {
  const box = document.getElementById("meta");
  box.replaceChildren();
  const meta = renderMeta.card;
  if (meta) {
    box.append(el("a", { class: "card", href: `#/task/${encodeURIComponent(meta.key)}`, "data-status": meta.status,
                         "data-key": meta.key },
      el("div", { class: "key" }, `${meta.key} · ${meta.status}`), el("div", { class: "title" }, meta.title)));
  }
  for (const line of renderMeta.session || []) box.append(el("div", { class: "muted" }, line));
}

function renderProgress(done, total) {
  document.getElementById("progress-text").textContent = `done ${done} of ${total}`;
  document.getElementById("progress-fill").style.width = total ? `${(100 * done) / total}%` : "0";
}

// -- the board ---------------------------------------------------------------------------------
function card(c) {
  const waits = c.waits_on && c.waits_on.length ? el("div", { class: "waits", title: c.waiting || "" },
    `waits on ${c.waits_on.join(", ")}`) : null;
  const retry = !READ_ONLY && c.status === "blocked"
    ? el("button", { class: "primary", "data-action": "retry",
                     onclick: (e) => { e.preventDefault(); act(c.key, "retry"); } }, "Retry") : null;
  return el("a", { class: "card", href: `#/task/${encodeURIComponent(c.key)}`, "data-key": c.key, "data-status": c.status },
    el("div", { class: "key" }, c.key),
    el("div", { class: "title" }, c.title),
    el("div", { class: "meta" },
      [c.priority, c.phase !== null ? `phase ${c.phase}` : null, c.turns ? `${c.turns} turns` : null,
       c.cost_usd ? money(c.cost_usd) : null, c.worker ? `on ${c.worker.split(":").pop()}` : null]
        .filter(Boolean).join(" · ")),
    waits, retry);
}

function column(name, data) {
  const cards = el("div", { class: "cards" }, data.cards.map(card));
  const col = el("div", { class: "column", "data-column": name },
    el("h3", {}, COLUMN_NAMES[name] || name, el("span", { class: "count" }, data.total)), cards);
  let shown = data.cards.length;
  if (shown < data.total) {
    const more = el("button", { class: "more" }, `Show more (${data.total - shown} more)`);
    more.addEventListener("click", async () => {
      const page = await api(`/api/board?column=${name}&offset=${shown}`);
      const next = page.columns[name].cards;
      cards.append(...next.map(card));
      shown += next.length;
      if (shown >= data.total) more.remove(); else more.textContent = `Show more (${data.total - shown} more)`;
    });
    col.append(more);
  }
  return col;
}

async function loadBoard() {
  const data = await api("/api/board");
  const board = document.getElementById("board");
  board.replaceChildren(...Object.entries(data.columns).map(([name, col]) => column(name, col)));
  renderMeta.card = data.meta;
  renderMeta();
  board.dataset.loaded = "true";
}

async function loadCost() {
  const { points } = await api("/api/cost");
  const svg = document.getElementById("cost-chart");
  svg.replaceChildren();
  const NS = "http://www.w3.org/2000/svg";
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };
  if (!points.length) { svg.append(node("text", { x: 4, y: 14 }, "no cost recorded this session")); return; }
  const times = points.map((p) => Date.parse(p.at));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const top = Math.max(...points.map((p) => p.cost_usd), 1e-9);
  const xy = points.map((p, i) => [t1 > t0 ? (300 * (times[i] - t0)) / (t1 - t0) : 300, 100 - (95 * p.cost_usd) / top]);
  const path = [[0, 100], ...xy].map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  svg.append(node("path", { class: "area", d: `${path} L${xy[xy.length - 1][0].toFixed(1)},100 Z` }));
  svg.append(node("path", { class: "line", d: path }));
  svg.append(node("text", { x: 4, y: 10 }, money(top)));
}

async function loadStatus() { renderStatus(await api("/api/status")); }

async function refresh() {
  const jobs = [loadStatus(), loadCost()];
  if (!document.getElementById("board-view").hidden) jobs.push(loadBoard());
  const ref = currentTask();
  if (ref) jobs.push(showTask(ref));
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) toast(String(failed.reason.message || failed.reason));
}

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 400);
}

// -- live events --------------------------------------------------------------------------------
function addEvent(e) {
  const list = document.getElementById("events");
  const who = e.task_key || e.key || e.task_id;
  const level = e.kind === "error" ? "err" : ["warning", "rate_limit", "api_retry", "permission_denied"].includes(e.kind) ? "warn" : "";
  list.prepend(el("li", { class: level, "data-kind": e.kind },
    `${when(e.at).slice(11)} `, el("span", { class: "kind" }, e.kind), who ? `[${who}] ` : "", e.line || ""));
  while (list.children.length > 300) list.lastChild.remove();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events?tail=40");
  source.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.className = "pill off"; };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    addEvent(event);
    const key = event.task_key || event.key;
    const cost = event.cost_usd ?? event.cost_usd_estimate;
    if (event.kind === "usage" && key && typeof cost === "number") liveCost.set(key, cost);
    if (event.kind === "task_recorded" && key) liveCost.delete(key);
    if (REFRESHING.has(event.kind)) refreshSoon();
  };
}

// -- the task page ------------------------------------------------------------------------------
function diffBlock(text) {
  return el("pre", { class: "diff" }, text.split("\n").map((line) => {
    const cls = line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("commit ")
      ? "file" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
    return el("div", { class: cls }, line || " ");
  }));
}

function section(title, ...body) { return el("section", {}, el("h2", {}, title), ...body); }
function list(items) { return el("ul", {}, items.map((i) => el("li", {}, i))); }

function taskActions(t) {
  if (READ_ONLY) return el("p", { class: "muted" }, "read-only dashboard");
  const priority = el("select", { "aria-label": "priority", id: "priority" },
    PRIORITIES.map((p) => el("option", { value: p, selected: p === t.priority }, p)));
  priority.addEventListener("change", () => act(t.key, "priority", { priority: priority.value }));
  const review = t.status === "in_review" ? reviewActions(t) : null;
  return el("div", { class: "actions" },
    review,
    ["blocked", "todo", "in_progress"].includes(t.status)
      ? el("button", { class: "primary", "data-action": "retry", onclick: () => act(t.key, "retry") }, "Retry") : null,
    t.status !== "canceled" && t.status !== "done"
      ? el("button", { class: "danger", "data-action": "cancel", onclick: () => act(t.key, "cancel") }, "Cancel") : null,
    el("label", {}, "priority ", priority));
}

// execution.handoff: review. Approve merges the branch as it is; reject sends the note to the agent.
function reviewActions(t) {
  const note = el("input", { type: "text", id: "review-note", "aria-label": "what to change",
                             placeholder: "what to change (for reject)" });
  return el("span", { class: "review" },
    el("button", { class: "primary", "data-action": "approve", onclick: () => act(t.key, "approve") }, "Approve"),
    note,
    el("button", { "data-action": "reject", onclick: () => act(t.key, "reject", { note: note.value }) }, "Reject"));
}

async function showTask(ref) {
  const data = await api(`/api/tasks/${encodeURIComponent(ref)}`);
  const t = data.task;
  const box = document.getElementById("task");
  box.replaceChildren(el("div", { class: "task", "data-key": t.key, "data-status": t.status },
    el("h1", {}, t.title),
    el("div", { class: "facts" },
      el("span", {}, el("b", {}, t.key)), el("span", { id: "task-status" }, `status ${t.status}`),
      el("span", {}, `priority ${t.priority}`), el("span", {}, `${t.turns} turns`), el("span", {}, money(t.cost_usd)),
      data.waiting ? el("span", {}, data.waiting) : null),
    taskActions(t),
    t.description ? section("Description", el("p", {}, t.description)) : null,
    t.acceptance_criteria.length ? section("Acceptance criteria", list(t.acceptance_criteria)) : null,
    t.test_steps.length ? section("Test steps", list(t.test_steps)) : null,
    data.attempts.length ? section("Attempts", el("table", {},
      el("tr", {}, ["#", "When", "Outcome", "Turns", "Cost", "Time", "Commit"].map((h) => el("th", {}, h))),
      data.attempts.map((a, i) => el("tr", { class: a.after_retry ? "" : "muted" },
        el("td", {}, i + 1), el("td", {}, when(a.at)), el("td", {}, a.outcome), el("td", {}, a.turns),
        el("td", {}, money(a.cost_usd)), el("td", {}, `${Math.round(a.duration_s)}s`),
        el("td", {}, a.commit ? a.commit.slice(0, 12) : "-"))))) : null,
    data.evidence.length ? section("Verification evidence", data.evidence.map((e) => el("div", {},
      el("p", {}, `${when(e.at)} ${e.passed ? "passed" : "FAILED"}${e.attempt ? ` (attempt ${e.attempt})` : ""}`,
        e.reason ? `: ${e.reason}` : ""),
      e.commands.map((c) => el("pre", {},
        `$ ${c.command}  → ${c.timed_out ? "timed out" : `exit ${c.exit_code}`} (${c.duration_s}s)\n${c.tail.join("\n")}`))))) : null,
    data.commits.length ? section(`Commits (${data.commits.length})`,
      data.diff_problem ? el("p", { class: "muted" }, data.diff_problem) : diffBlock(data.diff),
      data.diff_truncated ? el("p", { class: "muted" }, "diff truncated: see `autonomous diff`") : null) : null,
    t.notes.length ? section("Notes", el("ol", { class: "notes" },
      t.notes.map((n) => el("li", {}, el("b", {}, `${when(n.at)} ${n.author}: `), n.text)))) : null));
}

// -- routing ------------------------------------------------------------------------------------
function currentTask() {
  const match = location.hash.match(/^#\/task\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function route() {
  const ref = currentTask();
  document.getElementById("board-view").hidden = Boolean(ref);
  document.getElementById("task-view").hidden = !ref;
  try {
    if (ref) await showTask(ref); else await loadBoard();
  } catch (err) {
    toast(String(err.message || err));
  }
}

window.addEventListener("hashchange", route);
route();
loadStatus().catch((err) => toast(String(err.message || err)));
loadCost().catch(() => {});
connect();
