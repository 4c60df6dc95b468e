// LongTask console: one page, hash routes (#/tasks, #/tasks/NAME, #/new), the REST API
// called from the same origin with the session cookie. Every decision (who may see what,
// which control request applies, what a dry run finds) is the API's: this script shows its
// answers, and its problem details when it refuses. Text from the API is set as text,
// never as HTML.

const $ = (selector) => document.querySelector(selector);
const LIST_POLL_MS = 5000;          // the list's refresh, while it is shown and visible
const TASK_EXTRAS_MIN_MS = 3000;    // row errors and history: at most this often
const REVIEW_ROW_ERRORS = 20;       // row errors shown on the review screen (its count says all)
const FALLBACK_TYPES = ["BaselineUpload", "Export", "BulkTeamCreate", "BulkSubmissionDelete"];
// The types that read an uploaded file (params.fileId).
const FILE_TYPES = ["BaselineUpload", "BulkTeamCreate"];
const FALLBACK_PHASES = ["Pending", "Queued", "Running", "Pausing", "Paused", "Succeeded",
  "Failed", "Terminating", "RollingBack", "RolledBack", "Terminated"];
const PHASE_WORDS = {
  Pending: "Waiting for the operator to pick it up.",
  Queued: "Waiting its turn: another task holds its concurrency key.",
  Running: "Running: rows are being written.",
  Pausing: "Pausing: the runner is finishing its current chunk.",
  Paused: "Paused: nothing is being written; resume to go on from the last checkpoint.",
  Succeeded: "Succeeded: every row was processed.",
  Failed: "Failed: the task stopped on an error (see the message and conditions).",
  Terminating: "Terminating: the runner is being stopped.",
  RollingBack: "Rolling back: what it wrote is being removed.",
  RolledBack: "Rolled back: what it wrote was removed.",
  Terminated: "Terminated: stopped, and what it wrote was kept.",
};

const state = {
  session: null,        // GET /console/session
  enums: { types: FALLBACK_TYPES, phases: FALLBACK_PHASES },
  listTimer: null,
  listNext: null,
  source: null,         // the task page's EventSource
  task: null,           // the task page's task
  extrasAt: 0,
  upload: null,         // the new task's uploaded file
  request: null,        // the new task's request, as last checked
  idempotencyKey: null,
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function count(n) {
  return n === null || n === undefined ? "?" : Number(n).toLocaleString();
}

// Rate and ETA are the runner's while it runs; in another phase they are its last ones.
function rate(progress, phase) {
  if (phase !== "Running") return "—";
  const r = progress && progress.ratePerSecond;
  return r === null || r === undefined ? "—" : `${Number(r).toFixed(1)} rows/s`;
}

function progressBar(task, label) {
  const p = task.rollback && ["RollingBack", "RolledBack"].includes(task.phase)
    ? task.rollback : task.progress;
  const bar = el("progress", { max: 100, "aria-label": label });
  let text;
  if (p && p.total) {
    const percent = p.percent !== undefined && p.percent !== null
      ? p.percent : Math.floor((100 * p.done) / p.total);
    bar.value = percent;
    text = `${count(p.done)} of ${count(p.total)} (${percent}%)`;
  } else if (p) {
    text = `${count(p.done)} done`;             // total unknown: an indeterminate bar
  } else {
    bar.value = 0;
    text = "not started";
  }
  bar.setAttribute("aria-valuetext", text);
  return [bar, el("span", { class: "num", text: ` ${text}` })];
}

class ApiFailure extends Error {
  constructor(status, problem) {
    const parts = [];
    if (problem && typeof problem === "object") {
      parts.push(problem.detail || problem.title || `HTTP ${status}`);
      for (const e of problem.errors || []) {
        const where = e.field || e.parameter || e.pointer;
        parts.push(where ? `${where}: ${e.detail}` : e.detail);
      }
    } else {
      parts.push(`HTTP ${status}`);
    }
    super(parts.join("\n"));
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET", json, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  let body;
  if (method !== "GET") sent["X-CSRF-Token"] = state.session ? state.session.csrfToken : "";
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const answer = await fetch(path, { method, headers: sent, body, credentials: "same-origin" });
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (answer.status === 401 && path !== "/console/session") {
    showSignIn();
  }
  if (!answer.ok) throw new ApiFailure(answer.status, data);
  return { status: answer.status, data, headers: answer.headers };
}

function notice(text, keep = false) {
  // keep: the notice is for the page the next route shows (a started task's)
  $("#notice").textContent = text || "";
  state.keepNotice = keep;
}

function alertText(text) {
  const box = $("#alert");
  box.textContent = text || "";
  box.hidden = !text;
}

function fill(select, values, keepFirst = true) {
  if (select.tagName !== "SELECT") return;
  const first = keepFirst ? select.options[0] : null;
  select.replaceChildren(...(first ? [first] : []), ...values.map((v) => el("option", { value: v, text: v })));
}

function organizations() {
  const orgs = state.session ? state.session.organizations : [];
  return orgs.filter((o) => o !== "*");
}

// ------------------------------------------------------------------ views

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    const current = (view === "view-tasks" && link.hash === "#/tasks")
      || (view === "view-new" && link.hash === "#/new");
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
}

function leave() {
  if (state.listTimer) clearTimeout(state.listTimer);
  state.listTimer = null;
  if (state.source) state.source.close();
  state.source = null;
}

function showSignIn() {
  leave();
  state.session = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  show("view-signin");
  $("#signin-refused").hidden = new URLSearchParams(location.search).get("signin") !== "refused";
  $("#token").focus();
}

async function route() {
  leave();
  alertText("");
  if (state.keepNotice) state.keepNotice = false; else notice("");
  if (!state.session) return;
  const hash = location.hash || "#/tasks";
  const match = hash.match(/^#\/tasks\/([^/]+)$/);
  if (match) {
    show("view-task");
    await openTask(decodeURIComponent(match[1]));
  } else if (hash === "#/new") {
    show("view-new");
    $("#new-title").focus({ preventScroll: true });
  } else {
    show("view-tasks");
    await loadList();
  }
}

function focusHeading(selector) {
  const heading = $(selector);
  heading.setAttribute("tabindex", "-1");
  heading.focus({ preventScroll: false });
}

// ------------------------------------------------------------------ the list

function listQuery(cursor) {
  const params = new URLSearchParams();
  for (const name of ["organization", "type", "phase"]) {
    const value = $(`#filter-${name}`).value;
    if (value) params.append(name, value);
  }
  params.set("limit", "25");
  if (cursor) params.set("cursor", cursor);
  return `/v1/tasks?${params}`;
}

function taskRow(task) {
  const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
  const progress = task.progress || {};
  return el("tr", { "data-task": task.name },
    cell("Task", el("a", { href: `#/tasks/${encodeURIComponent(task.name)}`, text: task.requestedName || task.name })),
    cell("Type", task.type),
    cell("Organization", task.organization),
    cell("Phase", el("span", { class: "phase", "data-phase": task.phase, text: task.phase })),
    cell("Progress", el("span", {}, ...progressBar(task, `Progress of ${task.requestedName || task.name}`))),
    cell("Rate", el("span", { class: "num", text: rate(progress, task.phase) })),
    cell("ETA", el("span", { class: "num", text: task.phase === "Running" ? duration(progress.etaSeconds) : "—" })),
    cell("Started or last changed by", task.requestedBy || (task.lastAction && task.lastAction.requestedBy) || "—"),
    cell("Why", task.reason || (task.lastAction && task.lastAction.reason) || "—"));
}

function keepRows(body, rows) {
  // Rows already shown are updated cell by cell, their link kept, so a keyboard user's
  // focus stays where it was across refreshes.
  const shown = new Map([...body.children].map((row) => [row.dataset.task, row]));
  const kept = rows.map((row) => {
    const old = shown.get(row.dataset.task);
    if (!old) return row;
    [...row.children].slice(1).forEach((cell, i) => old.children[i + 1].replaceChildren(...cell.childNodes));
    return old;
  });
  const same = kept.length === body.children.length && kept.every((row, i) => body.children[i] === row);
  if (!same) body.replaceChildren(...kept);
}

async function loadList(append = false) {
  const body = $("#task-table tbody");
  try {
    const { data } = await api(listQuery(append ? state.listNext : null));
    const rows = data.items.map(taskRow);
    if (append) body.append(...rows); else keepRows(body, rows);
    state.listNext = data.next;
    $("#list-more").hidden = !data.next;
    $("#list-empty").hidden = body.children.length > 0;
    $("#list-updated").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${LIST_POLL_MS / 1000} s.`;
  } catch (failure) {
    if (failure.status !== 401) alertText(failure.message);
  }
  if (!$("#view-tasks").hidden && state.session) {
    // Polling with a bound: only while the list is shown, and slower in a hidden tab.
    state.listTimer = setTimeout(() => loadList(false), document.hidden ? LIST_POLL_MS * 6 : LIST_POLL_MS);
  }
}

// ------------------------------------------------------------------ a task

function facts(task) {
  const rows = [
    ["Name", task.name],
    ["Type", task.type],
    ["Organization", task.organization],
    ["Desired state", task.state],
    ["On terminate", task.onTerminate],
    ["Message", task.message || "—"],
    ["Rate", rate(task.progress, task.phase)],
    ["ETA", task.phase === "Running" ? duration(task.progress && task.progress.etaSeconds) : "—"],
    ["Row errors", count(task.progress ? task.progress.rowErrors : 0)],
    ["Rate limit", task.rateLimit ? `${task.rateLimit} rows/s` : "none"],
    ["Last request by", task.requestedBy || "—"],
    ["Why", task.reason || "—"],
    ["Created", when(task.createdAt)],
    ["Started", when(task.startedAt)],
    ["Finished", when(task.finishedAt)],
    ["Running for", duration(task.runningSeconds)],
    ["Paused for", duration(task.pausedSeconds)],
    ["Parameters", JSON.stringify(task.params)],
  ];
  if (task.deleting) rows.splice(1, 0, ["Deleting", `since ${when(task.deletionRequestedAt)}`]);
  return rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: v })]);
}

function renderTask(task) {
  state.task = task;
  $("#task-title").textContent = task.requestedName ? `${task.requestedName} (${task.name})` : task.name;
  const words = PHASE_WORDS[task.phase] || task.phase;
  $("#task-words").replaceChildren(
    el("span", { class: "phase", "data-phase": task.phase, id: "task-phase", text: task.phase }),
    ` — ${words}`, task.deleting ? " Deletion requested." : "");
  $("#task-progress").replaceChildren(...progressBar(task, `Progress of ${task.name}`));
  $("#task-facts").replaceChildren(...facts(task));
  $("#task-conditions").replaceChildren(...(task.conditions.length ? task.conditions.map((c) =>
    el("li", {}, el("strong", { text: c.type }),
      ` is ${c.status === "True" ? "true" : c.status === "False" ? "false" : "unknown"}`,
      ` because ${c.reason}`, c.message ? `: ${c.message}` : "",
      el("span", { class: "hint", text: ` (since ${when(c.lastTransitionTime)})` })))
    : [el("li", { text: "No condition reported yet." })]));
  $("#task-output").hidden = task.type !== "Export";
  const now = Date.now();
  if (now - state.extrasAt > TASK_EXTRAS_MIN_MS || task.final) {
    state.extrasAt = now;
    loadExtras(task);
  }
}

async function loadExtras(task) {
  const name = encodeURIComponent(task.name);
  try {
    const [errors, history] = await Promise.all([
      api(`/v1/tasks/${name}/errors?limit=100`), api(`/v1/tasks/${name}/history`)]);
    const e = errors.data;
    $("#errors-summary").textContent = e.total
      ? `${count(e.total)} bad rows; the first ${count(e.items.length)} by line.`
      : "No row refused.";
    $("#row-errors").hidden = e.items.length === 0;
    $("#row-errors tbody").replaceChildren(...e.items.map((r) => el("tr", {},
      el("td", { class: "num", text: r.line }), el("td", { text: r.column || "—" }),
      el("td", { text: r.reason }), el("td", { text: r.value ?? "" }))));
    const h = history.data;
    $("#history tbody").replaceChildren(...h.entries.map((entry) => el("tr", {},
      el("td", { text: when(entry.at) }), el("td", { text: entry.source || "—" }),
      el("td", { text: entry.reason }), el("td", { text: entry.message }))));
    $("#history-note").textContent = h.lastAction
      ? `Last request: ${h.lastAction.state} by ${h.lastAction.requestedBy || "?"} at ${when(h.lastAction.at)}`
        + (h.lastAction.reason ? ` — "${h.lastAction.reason}"` : "") + ". The cluster keeps Events for about an hour."
      : "The cluster keeps Events for about an hour.";
  } catch (failure) {
    if (failure.status !== 401) alertText(failure.message);
  }
  if (task.type === "Export") loadOutput(task);
}

async function loadOutput(task) {
  const link = $("#output-link");
  const path = `/v1/tasks/${encodeURIComponent(task.name)}/output`;
  if (task.phase !== "Succeeded") {
    link.removeAttribute("href");
    $("#output-size").textContent = `(served once the export has succeeded; it is ${task.phase})`;
    $("#output-sha256").textContent = "—";
    return;
  }
  // The checksum is the API's, in the answer's headers; the body is not read here.
  let answer;
  try {
    answer = await fetch(path, { credentials: "same-origin" });
  } catch {
    $("#output-size").textContent = "(the output could not be reached)";
    return;
  }
  if (!answer.ok) {
    $("#output-size").textContent = `(HTTP ${answer.status})`;
    return;
  }
  $("#output-sha256").textContent = answer.headers.get("LongTask-Output-SHA256") || "—";
  $("#output-size").textContent = `(${count(answer.headers.get("Content-Length"))} bytes, `
    + `${count(answer.headers.get("LongTask-Output-Rows"))} rows)`;
  if (answer.body) answer.body.cancel();
  link.href = path;
}

async function openTask(name) {
  state.extrasAt = 0;
  $("#task-title").textContent = name;
  try {
    const { data } = await api(`/v1/tasks/${encodeURIComponent(name)}`);
    renderTask(data);
    focusHeading("#task-title");
  } catch (failure) {
    if (failure.status === 404) {
      $("#task-words").textContent = "No such task (or not one of your organizations).";
      for (const part of ["#task-progress", "#task-facts", "#task-conditions"]) $(part).replaceChildren();
    }
    if (failure.status !== 401) alertText(failure.message);
    return;
  }
  watch(name);
}

function watch(name) {
  // Live: the API's Server-Sent Events for this task; closed when the page is left or the
  // stream says it ended. The browser retries a dropped stream by itself.
  const source = new EventSource(`/v1/tasks/${encodeURIComponent(name)}/watch`);
  state.source = source;
  source.addEventListener("task", (event) => {
    if (state.source === source) renderTask(JSON.parse(event.data));
  });
  for (const last of ["end", "deleted", "timeout"]) {
    source.addEventListener(last, () => {
      source.close();
      if (state.source === source && last === "end") openTaskAgain(name);
    });
  }
  source.addEventListener("error", (event) => {
    if (event.data) {                       // the API's own "error" event
      alertText(JSON.parse(event.data).detail);
      source.close();
    }
  });
}

async function openTaskAgain(name) {
  try {
    const { data } = await api(`/v1/tasks/${encodeURIComponent(name)}`);
    state.extrasAt = 0;
    renderTask(data);
  } catch (failure) {
    if (failure.status !== 401) alertText(failure.message);
  }
}

// ------------------------------------------------------------------ control

const ACTIONS = {
  pause: { title: "Pause the task", button: "Pause" },
  resume: { title: "Resume the task", button: "Resume" },
  terminate: { title: "Terminate the task", button: "Terminate" },
};
let pendingAction = null;
let returnFocus = null;

function askReason(action, opener) {
  pendingAction = action;
  returnFocus = opener;
  const dialog = $("#control-dialog");
  $("#control-title").textContent = ACTIONS[action].title;
  $("#control-confirm").textContent = ACTIONS[action].button;
  $("#control-confirm").className = action === "terminate" ? "danger" : "";
  $("#control-rollback").hidden = action !== "terminate";
  $("#control-on-terminate").textContent = state.task ? `onTerminate: ${state.task.onTerminate}` : "";
  $("#control-reason").value = "";
  $("#control-error").hidden = true;
  dialog.showModal();
  $("#control-reason").focus();
}

async function sendControl(event) {
  event.preventDefault();
  const reason = $("#control-reason").value.trim();
  if (!reason) {
    $("#control-error").textContent = "Say why: the reason is recorded on the task.";
    $("#control-error").hidden = false;
    $("#control-reason").focus();
    return;
  }
  const json = { reason };
  if (pendingAction === "terminate") {
    const choice = document.querySelector('input[name="rollback"]:checked').value;
    if (choice) json.rollback = choice === "true";
  }
  const name = state.task.name;
  try {
    const { data } = await api(`/v1/tasks/${encodeURIComponent(name)}/${pendingAction}`, { method: "POST", json });
    $("#control-dialog").close();
    notice(`${ACTIONS[pendingAction].button} requested: the task is ${data.phase}, desired state ${data.state}.`);
    state.extrasAt = 0;
    renderTask(data);
  } catch (failure) {
    $("#control-error").textContent = failure.message;
    $("#control-error").hidden = false;
  }
}

// ------------------------------------------------------------------ a new task

function showParams() {
  const type = $("#new-type").value;
  for (const field of document.querySelectorAll("[data-types]")) {
    field.hidden = !field.dataset.types.split(" ").includes(type);
  }
  $("#new-file-step").hidden = !FILE_TYPES.includes(type);
}

function uploadFile() {
  const file = $("#new-file").files[0];
  const organization = $("#new-organization").value;
  if (!file) { alertText("Choose a CSV file first."); $("#new-file").focus(); return; }
  alertText("");
  state.upload = null;
  const bar = $("#upload-progress");
  bar.value = 0;
  $("#upload-text").textContent = `Uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/v1/files?organization=${encodeURIComponent(organization)}`);
  xhr.setRequestHeader("X-CSRF-Token", state.session.csrfToken);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      bar.value = Math.floor((100 * event.loaded) / event.total);
      $("#upload-text").textContent = `${count(event.loaded)} of ${count(event.total)} bytes`;
    }
  });
  xhr.addEventListener("load", () => {
    let data = null;
    try { data = JSON.parse(xhr.responseText); } catch { data = null; }
    if (xhr.status === 201) {
      bar.value = 100;
      state.upload = data;
      $("#upload-text").textContent = `Uploaded ${data.filename}: ${count(data.sizeBytes)} bytes, `
        + `about ${count(data.rowCountEstimate)} rows, ${data.encodingLabel}, SHA-256 ${data.sha256}`;
      $("#upload-text").dataset.fileId = data.id;
    } else {
      $("#upload-text").textContent = "Upload refused.";
      alertText(new ApiFailure(xhr.status, data).message);
    }
  });
  xhr.addEventListener("error", () => {
    $("#upload-text").textContent = "Upload failed: the connection broke.";
  });
  xhr.send(form);
}

function newRequest() {
  const type = $("#new-type").value;
  const params = {};
  for (const input of document.querySelectorAll("[data-param]")) {
    if (!input.closest("[data-types]").hidden && input.value.trim()) params[input.dataset.param] = input.value.trim();
  }
  if (FILE_TYPES.includes(type) && state.upload) params.fileId = state.upload.id;
  const request = { type, organization: $("#new-organization").value, params };
  const limit = $("#new-rate").value.trim();
  if (limit) request.rateLimit = Number(limit);
  const reason = $("#new-reason").value.trim();
  if (reason) request.reason = reason;
  return request;
}

async function checkRequest(event) {
  event.preventDefault();
  alertText("");
  const request = newRequest();
  if (FILE_TYPES.includes(request.type) && !state.upload) {
    alertText("Upload the file first.");
    $("#new-file").focus();
    return;
  }
  $("#new-check").disabled = true;
  try {
    const { data } = await api("/v1/tasks/validate", { method: "POST", json: request });
    state.request = request;
    state.idempotencyKey = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
    renderReview(data);
  } catch (failure) {
    alertText(failure.message);
  } finally {
    $("#new-check").disabled = false;
  }
}

function renderReview(report) {
  const review = $("#review");
  review.hidden = false;
  const rows = report.rowsTotal === null || report.rowsTotal === undefined ? "an unknown number of"
    : `${report.rowsTotalEstimated ? "about " : ""}${count(report.rowsTotal)}`;
  $("#review-summary").textContent = (report.valid
    ? `The task can start: it would process ${rows} rows. `
    : "The task would fail or write nothing, so it cannot start as it is. ")
    + (report.sampled ? `Checked the first ${count(report.sampled.rows)} rows (stopped by: ${report.sampled.stoppedBy}).` : "");
  $("#review-errors").replaceChildren(...report.errors.map((e) =>
    el("li", { text: (e.field || e.pointer || e.parameter) ? `${e.field || e.pointer || e.parameter}: ${e.detail}` : e.detail })));
  const flagged = new Set(report.warnings.flatMap((w) => w.columns));
  $("#review-warnings").replaceChildren(...(report.warnings.length
    ? report.warnings.map((w) => el("li", { "data-code": w.code }, el("strong", { text: w.code }), `: ${w.detail}`))
    : [el("li", { class: "none", text: "None." })]));
  $("#review-columns tbody").replaceChildren(...report.columns.map((c) => el("tr", {
    class: flagged.has(c.header) ? "flagged" : c.target ? "" : "unmapped", "data-column": c.header },
  el("td", { class: "num", "data-label": "#", text: c.position }),
  el("td", { "data-label": "Column", text: c.header ?? "(no header)" }),
  el("td", { "data-label": "Maps to", text: c.target ? `→ ${c.target}` : "not mapped" }),
  el("td", { "data-label": "Type", text: c.type || "—" }),
  el("td", { class: "samples", "data-label": "Samples", text: c.samples.join(" · ") }),
  el("td", { class: "num", "data-label": "Invalid", text: `${count(c.invalid)} of ${count(c.values)}` }))));
  const shownErrors = report.rowErrors.slice(0, REVIEW_ROW_ERRORS);
  $("#review-row-errors-summary").textContent = report.rowErrorsTotal
    ? `${count(report.rowErrorsTotal)} bad rows among the ${count(report.rowsRead)} read`
      + (shownErrors.length < report.rowErrorsTotal ? `; the first ${shownErrors.length} below.` : ".")
    : "No bad row among those read.";
  $("#review-row-errors").hidden = shownErrors.length === 0;
  $("#review-row-errors tbody").replaceChildren(...shownErrors.map((r) => el("tr", {},
    el("td", { class: "num", text: r.line }), el("td", { text: r.column || "—" }),
    el("td", { text: r.reason }), el("td", { text: r.value ?? "" }))));
  $("#new-start").disabled = !report.valid;
  review.focus();
}

async function startTask() {
  $("#new-start").disabled = true;
  try {
    const { data } = await api("/v1/tasks", {
      method: "POST", json: state.request, headers: { "Idempotency-Key": state.idempotencyKey } });
    notice(`Started ${data.name}.`, true);
    $("#review").hidden = true;
    state.upload = null;
    $("#upload-text").textContent = "";
    $("#upload-progress").value = 0;
    $("#new-form").reset();
    location.hash = `#/tasks/${encodeURIComponent(data.name)}`;
  } catch (failure) {
    alertText(failure.message);
    $("#new-start").disabled = false;
  }
}

// ------------------------------------------------------------------ start

async function loadEnums() {
  // The API's own lists of task types and phases, from its OpenAPI document.
  try {
    const { data } = await api("/openapi.json");
    const schemas = data.components.schemas;
    if (schemas.Phase && schemas.Phase.enum) state.enums.phases = schemas.Phase.enum;
    const type = schemas.TaskCreate && schemas.TaskCreate.properties.type;
    if (type && type.enum) state.enums.types = type.enum;
  } catch {
    // the fallback lists stay
  }
}

async function signOut() {
  try {
    await api("/console/session", { method: "DELETE" });
  } catch (failure) {
    alertText(failure.message);
    return;
  }
  history.replaceState(null, "", "/console/");
  showSignIn();
  notice("Signed out.");
}

async function start() {
  $("#sign-out").addEventListener("click", signOut);
  $("#filters").addEventListener("change", () => { leave(); loadList(); });
  $("#list-more").addEventListener("click", () => loadList(true));
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => askReason(button.dataset.action, button));
  }
  $("#control-form").addEventListener("submit", sendControl);
  $("#control-cancel").addEventListener("click", () => $("#control-dialog").close());
  // However the dialog closes (Escape, Cancel, done), focus goes back to its button.
  $("#control-dialog").addEventListener("close", () => { if (returnFocus) returnFocus.focus(); });
  $("#new-type").addEventListener("change", showParams);
  $("#new-upload").addEventListener("click", uploadFile);
  $("#new-form").addEventListener("submit", checkRequest);
  $("#new-start").addEventListener("click", startTask);
  $("#new-change").addEventListener("click", () => { $("#review").hidden = true; $("#new-type").focus(); });
  window.addEventListener("hashchange", route);

  try {
    state.session = (await api("/console/session")).data;
  } catch {
    showSignIn();
    return;
  }
  if (location.search) history.replaceState(null, "", `/console/${location.hash}`);
  await loadEnums();
  const s = state.session;
  $("#who-text").textContent = `Signed in as ${s.subject} (${s.role}) for `
    + (s.organizations.includes("*") ? "every organization" : s.organizations.join(", "));
  $("#who").hidden = false;
  $("#nav").hidden = false;
  if (s.organizations.includes("*")) {
    // Every organization: there is no list of them to choose from, so the slug is typed.
    for (const id of ["filter-organization", "new-organization"]) {
      $(`#${id}`).replaceWith(el("input", { id, type: "text", spellcheck: "false",
        required: id === "new-organization", placeholder: "organization slug" }));
    }
  }
  fill($("#filter-organization"), organizations());
  fill($("#filter-type"), state.enums.types);
  fill($("#filter-phase"), state.enums.phases);
  fill($("#new-organization"), organizations(), false);
  fill($("#new-type"), state.enums.types, false);
  showParams();
  await route();
}

start();
