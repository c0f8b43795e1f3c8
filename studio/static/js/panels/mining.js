// Mining Queue panel: the review queue of mined hits, and the Background Miner that finds them
// (`hark mine` as the studio's "mine" job; the same session files as `hark queue`).
import { api, el, toast, poll, fileBrowser, jobView, subTabs } from "../api.js";

const AUDIO = /\.(wav|flac|ogg)$/i;
const POLL_MS = 1000;
const LABELS = { hard_negative: "false activation", positive: "wake word" };
const HITS_PER_PAGE = 50;

export async function init(section) {
  const state = { sessions: [], job: null, selectedPath: null, picked: [], reviewSession: null };
  const review = reviewQueue(state);
  const miner = backgroundMiner(state, (name) => { review.select(name); tabs.querySelector('[data-sub="Review queue"]').click(); });
  const tabs = subTabs({ "Review queue": review.element, "Background Miner": miner.element });
  section.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Mining Queue"),
    el("p", { class: "muted" }, "Scan long recordings with an exported model, then confirm what it fired on: ",
      "false activations go to the dataset's hard_negative/mined/, real wake words to positive/mined/, ",
      "and the next training run uses them. The queue is the same as `hark queue`."), tabs));

  async function refresh() {
    if (section.hidden) return;
    const data = await api("/api/mining/sessions");
    state.sessions = data.sessions;
    state.job = data.job;
    await miner.update();
    await review.update();
  }
  section.addEventListener("panel-shown", () => { miner.reloadChoices(); refresh(); });
  await miner.reloadChoices();
  poll(refresh, POLL_MS);
}

// ------------------------------------------------------------------ Background Miner

function field(label, input, error) {
  return el("label", {}, label, input, error);
}

function backgroundMiner(state, openReview) {
  const errors = {};
  for (const f of ["paths", "name", "run", "dataset", "threshold", "general"]) {
    errors[f] = el("span", { class: "error", "data-error": f });
  }
  // Picking recordings: click an entry, then "Add"; double-click opens a folder.
  const pickedList = el("ul", { "data-role": "picked" });
  const addButton = el("button", { class: "secondary", disabled: true, onclick: () => {
    if (state.selectedPath && !state.picked.includes(state.selectedPath)) state.picked.push(state.selectedPath);
    renderPicked();
  } }, "Add to recordings");
  const browser = fileBrowser({ filter: (entry) => AUDIO.test(entry.name), onPick: (path, isDir) => {
    state.selectedPath = path;
    addButton.disabled = false;
    addButton.textContent = isDir ? "Add folder to recordings" : "Add file to recordings";
  } });
  function renderPicked() {
    errors.paths.textContent = "";
    pickedList.replaceChildren(...state.picked.map((path) => el("li", { "data-path": path }, path, " ",
      el("button", { class: "secondary", "aria-label": `Remove ${path}`, onclick: () => {
        state.picked = state.picked.filter((p) => p !== path); renderPicked();
      } }, "Remove"))));
    if (!state.picked.length) pickedList.append(el("li", { class: "muted" }, "nothing picked yet"));
  }
  renderPicked();

  const name = el("input", { name: "session", placeholder: "e.g. night1", autocomplete: "off" });
  const run = el("select", { name: "run", onchange: () => loadDefault() });
  const dataset = el("select", { name: "dataset" });
  const threshold = el("input", { name: "threshold", type: "number", min: 0, max: 1, step: 0.01 });
  const thresholdHint = el("span", { class: "muted", "data-role": "threshold-default" });
  const startButton = el("button", { class: "primary", onclick: start }, "Start mining");

  async function loadDefault() {
    thresholdHint.textContent = "";
    threshold.placeholder = "";
    if (!run.value) return;
    try {
      const d = await api(`/api/mining/defaults?run=${encodeURIComponent(run.value)}`);
      threshold.placeholder = `default ${d.threshold}`;
      thresholdHint.textContent = `empty: ${d.ratio} × the model's threshold ${d.model_threshold} = ${d.threshold}`;
    } catch (e) { thresholdHint.textContent = e.message; }
  }

  async function start() {
    Object.values(errors).forEach((node) => { node.textContent = ""; });
    [name, run, dataset, threshold].forEach((n) => n.classList.remove("invalid"));
    startButton.disabled = true;
    try {
      await api("/api/mining/start", { body: { name: name.value.trim(), run: run.value, dataset: dataset.value,
        threshold: threshold.value === "" ? null : threshold.value, paths: state.picked } });
      toast(`mining ${name.value.trim()} started`);
    } catch (e) {
      const where = { bad_name: "name", session_exists: "name", no_export: "run", no_such_dataset: "dataset",
        bad_threshold: "threshold", no_paths: "paths", too_many_paths: "paths", outside_roots: "paths",
        no_such_root: "paths", not_found: "paths", bad_path: "paths" }[e.code] || "general";
      errors[where].textContent = e.message;
      ({ name, run, dataset, threshold })[where]?.classList.add("invalid");
    } finally { startButton.disabled = false; }
  }

  // Live progress of the mine job and its session.
  const job = jobView("mine", { stoppable: false });
  const pauseButton = el("button", { class: "danger", disabled: true, onclick: async () => {
    try { await api("/api/mining/pause", { method: "POST" }); toast("pausing at the next block..."); }
    catch (e) { toast(e.message, true); }
  } }, "Pause");
  const resumeButton = el("button", { class: "secondary", hidden: true, onclick: () => resume(resumeButton.dataset.session) }, "Resume");
  const stats = el("dl", { "data-role": "mining-stats", style: "display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.4rem 0" });
  const sessionsBody = el("tbody");
  let sessionsSignature = "";

  async function resume(session) {
    try { await api("/api/mining/resume", { body: { name: session } }); toast(`resuming ${session}`); }
    catch (e) { toast(e.message, true); }
  }

  function stat(label, value, role) {
    return [el("dt", {}, label), el("dd", { "data-stat": role }, value)];
  }

  async function update() {
    const current = await job.refresh();
    const running = current && (current.state === "running" || current.state === "stopping");
    pauseButton.disabled = !(current && current.state === "running" && current.progress);
    pauseButton.title = running && !current.progress ? "the miner is still loading the model" : "";
    const focus = current && current.meta.session;
    const session = state.sessions.find((s) => s.name === focus);
    resumeButton.hidden = !(session && session.resumable && !running);
    resumeButton.dataset.session = focus || "";
    if (session) {
      stats.replaceChildren(
        ...stat("Session", `${session.name} (${session.state})`, "session"),
        ...stat("Hours processed", `${session.hours_done.toFixed(3)} of ${session.hours_total.toFixed(3)} h`, "hours"),
        ...stat("Real-time factor", session.realtime_factor ? `${Math.round(session.realtime_factor)}× real time` : "-", "rtf"),
        ...stat("Files done", `${session.files_done} of ${session.files}` + (session.files_skipped ? ` (${session.files_skipped} skipped)` : ""), "files"),
        ...stat("Hits so far", String(session.hits), "hits"));
    } else {
      stats.replaceChildren(el("dd", { class: "muted" }, running ? "starting..." : "no mining session yet"));
    }
    // Rebuilt only when something changed, so a button is not replaced under the pointer.
    const signature = JSON.stringify([running, state.sessions]);
    if (signature === sessionsSignature) return;
    sessionsSignature = signature;
    sessionsBody.replaceChildren(...state.sessions.map((s) => el("tr", { "data-session": s.name },
      el("td", {}, s.name),
      el("td", { "data-role": "session-state", class: { complete: "ok", corrupted: "bad", interrupted: "bad" }[s.state] || "" },
        s.state + (s.state === "paused" ? " (partial)" : "")),
      el("td", {}, s.error ? s.error : `${s.files_done}/${s.files} files, ${(s.audio_s / 3600).toFixed(2)} h`),
      el("td", {}, s.error ? "" : `${s.hits} (${s.hits_pending} pending)`),
      el("td", {}, s.wake_word || ""),
      el("td", {}, s.resumable && !running ? el("button", { class: "secondary", onclick: () => resume(s.name) }, "Resume") : null,
        s.error ? null : el("button", { class: "secondary", onclick: () => openReview(s.name) }, "Review")))));
    if (!state.sessions.length) sessionsBody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "no sessions yet")));
  }

  async function reloadChoices() {
    try {
      const [{ runs }, { datasets }] = await Promise.all([api("/api/runs"), api("/api/datasets")]);
      const keepRun = run.value, keepData = dataset.value;
      const exported = runs.filter((r) => r.exported);
      run.replaceChildren(...exported.map((r) => el("option", { value: r.name }, r.wake_word ? `${r.name} (${r.wake_word})` : r.name)));
      if (!exported.length) run.append(el("option", { value: "" }, "no exported run yet"));
      dataset.replaceChildren(...datasets.map((d) => el("option", { value: d.name }, d.name)));
      if (!datasets.length) dataset.append(el("option", { value: "" }, "no dataset yet"));
      if (exported.some((r) => r.name === keepRun)) run.value = keepRun;
      if (datasets.some((d) => d.name === keepData)) dataset.value = keepData;
      if (run.value !== keepRun || !threshold.placeholder) await loadDefault();
    } catch (e) { errors.general.textContent = e.message; }
  }
  browser.open("").catch((e) => { errors.paths.textContent = e.message; });

  const element = el("div", { "data-subtab": "miner" },
    el("div", { class: "card" }, el("h2", {}, "Recordings to mine"),
      el("p", { class: "muted" }, "Folders configured with `hark studio --root NAME=PATH`. Click a file or folder, then add it; double-click opens a folder."),
      browser.element, el("div", { class: "row" }, addButton), el("h3", {}, "Picked"), pickedList, errors.paths),
    el("div", { class: "card" }, el("h2", {}, "New session"),
      el("div", { class: "row" },
        field("Session name", name, errors.name),
        field("Model (exported run)", run, errors.run),
        field("Dataset for confirmed hits", dataset, errors.dataset),
        field("Mining threshold", threshold, errors.threshold)),
      el("div", { class: "row" }, thresholdHint),
      el("div", { class: "row" }, startButton, errors.general)),
    el("div", { class: "card" }, el("h2", {}, "Progress"),
      el("div", { class: "row" }, pauseButton, resumeButton), stats, job.element),
    el("div", { class: "card" }, el("h2", {}, "Sessions"),
      el("table", { "data-role": "sessions" }, el("thead", {}, el("tr", {},
        ...["Session", "State", "Progress", "Hits", "Wake word", ""].map((h) => el("th", {}, h)))), sessionsBody)));
  return { element, update, reloadChoices };
}

// ------------------------------------------------------------------ Review queue

function reviewQueue(state) {
  const pick = el("select", { name: "review-session", onchange: () => { state.reviewSession = pick.value; selected.clear(); first = 0; load(); } });
  const show = el("select", { name: "show", "aria-label": "Show", onchange: () => { first = 0; render(); } },
    ...["all", "pending", "confirmed", "discarded"].map((s) => el("option", { value: s }, s)));
  const summary = el("p", { class: "muted", "data-role": "review-summary" });
  const body = el("tbody");
  const selected = new Set();
  const rows = new Map();  // hit id -> <tr>, kept so an <audio> that plays is never rebuilt
  let hits = [];
  let loadedSession = null;
  let first = 0;  // index of the first hit on the page shown, among the visible ones
  const selectAll = el("input", { type: "checkbox", "aria-label": "Select all hits on this page", onchange: () => {
    for (const hit of onPage()) { if (selectAll.checked) selected.add(hit.id); else selected.delete(hit.id); }
    render();
  } });
  // Turning the page drops the selection: the action buttons never act on hits out of sight.
  const pageButton = (label, step) => el("button", { class: "secondary", onclick: () => {
    first += step * HITS_PER_PAGE; selected.clear(); render();
  } }, label);
  const previous = pageButton("Previous hits", -1), next = pageButton("Next hits", 1);
  const pageInfo = el("span", { class: "muted", "data-role": "hits-page" });
  const pager = el("div", { class: "row", hidden: true }, previous, pageInfo, next);
  const actionButtons = [
    ["hard_negative", "Confirm as false activation", "primary"],
    ["positive", "Confirm as wake word", "secondary"],
    ["discard", "Discard", "danger"],
  ].map(([action, label, cls]) => el("button", { class: cls, disabled: true, "data-action": action, onclick: () => act(action) }, label));
  const error = el("span", { class: "error", "data-role": "review-error" });

  const visible = () => hits.filter((h) => show.value === "all" || h.status === show.value);
  const onPage = () => visible().slice(first, first + HITS_PER_PAGE);

  async function act(action) {
    error.textContent = "";
    const ids = [...selected];
    try {
      const { changed } = await api(`/api/mining/sessions/${encodeURIComponent(state.reviewSession)}/review`, { body: { ids, action } });
      const where = changed.length && changed[0].dataset_path ? `: ${changed[0].dataset_path.split("/").slice(0, -1).join("/")}/` : "";
      toast(action === "discard" ? `discarded ${changed.length} hit(s)` : `confirmed ${changed.length} hit(s) as ${LABELS[action]}${where}`);
      selected.clear();
      await load();
    } catch (e) { error.textContent = e.message; }
  }

  function statusText(hit) {
    return hit.status === "confirmed" ? `confirmed (${LABELS[hit.label] || hit.label})` : hit.status;
  }

  function row(hit) {
    let tr = rows.get(hit.id);
    if (!tr) {
      const box = el("input", { type: "checkbox", "aria-label": `Select hit ${hit.id}`, onchange: () => {
        if (box.checked) selected.add(hit.id); else selected.delete(hit.id);
        updateButtons();
      } });
      tr = el("tr", { "data-hit-id": hit.id },
        el("td", {}, box), el("td", {}, String(hit.id)), el("td", {}, hit.score.toFixed(3)),
        el("td", { class: "source" }, hit.source), el("td", {}, `${hit.offset_s.toFixed(2)} s`),
        el("td", { "data-role": "hit-status" }),
        el("td", {}, hit.clip ? el("audio", { controls: true, preload: "none", src: `/api/audio?path=${encodeURIComponent(hit.clip)}` })
          : el("span", { class: "muted" }, "clip outside the roots")));
      tr._box = box;
      rows.set(hit.id, tr);
    }
    const status = tr.querySelector('[data-role="hit-status"]');
    status.textContent = statusText(hit);
    status.className = { confirmed: "ok", discarded: "muted" }[hit.status] || "";
    status.title = hit.dataset_path || "";
    tr.dataset.status = hit.status;
    tr._box.checked = selected.has(hit.id);
    return tr;
  }

  function updateButtons() {
    actionButtons.forEach((b) => { b.disabled = selected.size === 0; });
    const shown = onPage();
    selectAll.checked = shown.length > 0 && shown.every((h) => selected.has(h.id));
  }

  function render() {
    // Pages of HITS_PER_PAGE keep a long night's queue quick to draw; the table grows with the page.
    const total = visible().length;
    first = Math.max(0, Math.min(first, Math.floor(Math.max(0, total - 1) / HITS_PER_PAGE) * HITS_PER_PAGE));
    pager.hidden = total <= HITS_PER_PAGE;
    previous.disabled = first === 0;
    next.disabled = first + HITS_PER_PAGE >= total;
    pageInfo.textContent = `hits ${first + 1}–${Math.min(first + HITS_PER_PAGE, total)} of ${total}`;
    const wanted = onPage().map(row);
    const current = [...body.children];
    if (wanted.length !== current.length || wanted.some((tr, i) => tr !== current[i])) {
      body.replaceChildren(...wanted);
      if (!wanted.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, hits.length ? "no hits with this status" : "no hits in this session yet")));
    }
    updateButtons();
  }

  async function load() {
    if (!state.reviewSession) { hits = []; summary.textContent = "no mining session yet: start one in Background Miner"; render(); return; }
    if (loadedSession !== state.reviewSession) { rows.clear(); loadedSession = state.reviewSession; }
    const data = await api(`/api/mining/sessions/${encodeURIComponent(state.reviewSession)}`);
    hits = data.hits;
    const s = data.session;
    summary.textContent = `${s.name}: ${s.state}; ${s.hits} hits (${s.hits_pending} pending, ${s.hits_confirmed} confirmed, `
      + `${s.hits_discarded} discarded); confirmed hits go to ${s.dataset || "(no dataset recorded)"}`;
    for (const id of [...selected]) if (!hits.some((h) => h.id === id)) selected.delete(id);
    render();
  }

  let lastSignature = "";
  async function update() {
    const names = state.sessions.filter((s) => !s.error).map((s) => s.name);
    if (pick.options.length !== names.length || names.some((n, i) => pick.options[i].value !== n)) {
      pick.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    }
    if (!names.includes(state.reviewSession)) {  // the most recently updated session
      const newest = state.sessions.filter((s) => !s.error).sort((a, b) => (b.updated || "").localeCompare(a.updated || ""))[0];
      state.reviewSession = newest ? newest.name : null;
    }
    if (state.reviewSession) pick.value = state.reviewSession;
    // Reload the hits when the session changed on disk (new hits, a review from the CLI).
    const s = state.sessions.find((x) => x.name === state.reviewSession);
    const signature = s ? `${s.name}|${s.updated}|${s.hits}|${s.hits_pending}|${s.hits_confirmed}|${s.hits_discarded}` : "";
    if (signature !== lastSignature) { lastSignature = signature; await load(); }
  }

  async function select(name) { state.reviewSession = name; pick.value = name; selected.clear(); first = 0; await load(); }

  const element = el("div", { "data-subtab": "review" },
    el("div", { class: "row" }, el("label", {}, "Session", pick), el("label", {}, "Show", show)),
    summary,
    el("div", { class: "row" }, ...actionButtons, error),
    el("table", { "data-role": "hits" }, el("thead", {}, el("tr", {}, el("th", {}, selectAll),
      ...["#", "Score", "Source", "Offset", "Status", "Clip"].map((h) => el("th", {}, h)))), body),
    pager);
  return { element, update, select };
}
