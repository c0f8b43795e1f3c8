// Shared helpers for every panel: JSON calls, DOM building, polling, job status, files.

export class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}

// The per-launch CSRF token the server put in index.html (studio/security.py); every
// request that changes something sends it back, which a page of another origin cannot do.
const CSRF_TOKEN = document.querySelector('meta[name="hark-csrf"]')?.content || "";

// fetch PATH; BODY (an object) is sent as JSON, FORM (FormData) as multipart.
// Resolves to the JSON answer; rejects with ApiError carrying the server's message.
export async function api(path, { method, body, form } = {}) {
  const init = { method: method || (body || form ? "POST" : "GET"), headers: {} };
  if (init.method !== "GET" && init.method !== "HEAD") init.headers["X-Hark-Csrf"] = CSRF_TOKEN;
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  if (form) init.body = form;
  let response;
  try { response = await fetch(path, init); } catch (e) { throw new ApiError(`the studio server is unreachable (${e.message})`, "offline", 0); }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
  if (!response.ok) {
    const err = data && data.error ? data.error : { code: "http_" + response.status, message: text.slice(0, 200) || response.statusText };
    throw new ApiError(err.message, err.code, response.status);
  }
  return data;
}

// el("div", {class: "row", onclick: fn}, child, "text", ...): a DOM element.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function toast(message, isError = false) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(box._timer);
  box._timer = setTimeout(() => { box.hidden = true; }, isError ? 8000 : 3000);
}

// Run FN now and every MS milliseconds while the page is open; returns a stop function.
export function poll(fn, ms) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; };
}

// Counts (parameters, files) with thousands separators, one way on every panel: 84,977.
export function fmtCount(n) {
  return n === null || n === undefined ? "?" : Number(n).toLocaleString("en-US");
}

// Sizes in decimal units (1 kB = 1000 bytes), one way on every panel: "348.7 kB", "1,234.5 MB".
export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "?";
  const one = { minimumFractionDigits: 1, maximumFractionDigits: 1 };
  if (bytes < 1e3) return `${fmtCount(bytes)} bytes`;
  if (bytes < 1e6) return `${(bytes / 1e3).toLocaleString("en-US", one)} kB`;
  return `${(bytes / 1e6).toLocaleString("en-US", one)} MB`;
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "?";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

// A live view of KIND's background job: state, progress bar with ETA, a Stop button, the log.
// onUpdate(job) is called after each refresh (job may be null). progressLabel names what the
// bar measures when the panel shows another ETA too (e.g. "this epoch" beside a whole run's).
// Returns {element, refresh}.
export function jobView(kind, { onUpdate, stoppable = true, stopLabel = "Stop", progressLabel = "" } = {}) {
  const state = el("span", { class: "job-state", "data-role": "job-state" }, "idle");
  const bar = el("progress", { max: 100, value: 0, hidden: true });
  const eta = el("span", { class: "muted", "data-role": "job-eta" });
  const log = el("pre", { class: "log", "data-role": "job-log", hidden: true });
  const stopButton = el("button", { class: "danger", hidden: true, onclick: async () => {
    try { await api(`/api/jobs/${kind}/stop`, { method: "POST" }); toast(`${kind}: stopping`); refresh(); }
    catch (e) { toast(e.message, true); }
  } }, stopLabel);
  const element = el("div", { class: "job", "data-job-kind": kind },
    el("div", { class: "row" }, el("span", {}, `${kind} job: `), state, eta, stoppable ? stopButton : null), bar, log);
  async function refresh() {
    const { job } = await api(`/api/jobs/${kind}`);
    if (!job) { state.textContent = "idle"; bar.hidden = true; stopButton.hidden = true; log.textContent = ""; log.hidden = true; }
    else {
      state.textContent = job.state + (job.returncode !== null && job.state === "failed" ? ` (exit ${job.returncode})` : "");
      state.className = "job-state " + ({ done: "ok", failed: "bad" }[job.state] || "");
      const running = job.state === "running" || job.state === "stopping";
      stopButton.hidden = !running;
      if (running && job.progress) {
        bar.hidden = false; bar.value = job.progress.percent;
        const p = job.progress;
        eta.textContent = progressLabel
          ? `${progressLabel}: ${p.percent}% (${p.done}/${p.total})${p.eta_s === null ? "" : `, ${fmtSeconds(p.eta_s)} left`}`
          : `${p.percent}% (${p.done}/${p.total}), ETA ${fmtSeconds(p.eta_s)}`;
      } else { bar.hidden = !running; if (!running) eta.textContent = ""; }
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = job.log.join("\n");
      log.hidden = !job.log.length;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    if (onUpdate) onUpdate(job);
    return job;
  }
  return { element, refresh };
}

// A folder/file picker over the server's browsable roots. onPick(path, isDir) on click.
// Returns {element, open(path)}.
export function fileBrowser({ onPick, filter } = {}) {
  const where = el("div", { class: "muted", "data-role": "fb-path" });
  const list = el("div", { class: "filebrowser", "data-role": "filebrowser" });
  async function open(path = "") {
    const data = await api(`/api/files?path=${encodeURIComponent(path)}`);
    where.textContent = data.path || "(roots)";
    list.replaceChildren();
    if (data.path) {
      const parent = data.path.split("/").slice(0, -1).join("/");
      list.append(el("div", { class: "dir", onclick: () => open(parent) }, "../ (up)"));
    }
    for (const entry of data.entries) {
      if (filter && !entry.is_dir && !filter(entry)) continue;
      const row = el("div", { "data-path": entry.path, onclick: () => {
        list.querySelectorAll(".selected").forEach((n) => n.classList.remove("selected"));
        row.classList.add("selected");
        if (onPick) onPick(entry.path, entry.is_dir);
      }, ondblclick: () => entry.is_dir && open(entry.path) }, entry.is_dir ? `${entry.name}/` : entry.name);
      row.classList.add(entry.is_dir ? "dir" : "file");
      list.append(row);
    }
  }
  return { element: el("div", {}, where, list), open };
}

// Sub-tabs inside a panel: {name: element}; returns the container.
export function subTabs(tabs) {
  const bar = el("div", { class: "subtabs", role: "tablist" });
  const box = el("div");
  const names = Object.keys(tabs);
  const show = (name) => {
    for (const n of names) tabs[n].hidden = n !== name;
    bar.querySelectorAll("button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.sub === name)));
  };
  for (const name of names) {
    bar.append(el("button", { role: "tab", dataset: { sub: name }, onclick: () => show(name) }, name));
    box.append(tabs[name]);
  }
  show(names[0]);
  return el("div", {}, bar, box);
}
