// Data panel: pick or create a dataset, synthesize one for a phrase, import audio folders,
// see its health (counts, durations, problems) and listen to its files.
import { api, el, toast, poll, fmtBytes, fmtSeconds, jobView, fileBrowser } from "../api.js";

const AUDIO = /\.(wav|flac|ogg)$/i;
const PAGE = 20;
const CLASS_NAMES = { positive: "positive", negative: "negative", hard_negative: "hard negative",
                      background: "background", rir: "room impulse responses" };
const PROBLEM_TITLES = {
  sample_rate: (n, hz) => `${n} file(s) not ${hz / 1000} kHz mono: the loader converts them on every load; convert them once`,
  unreadable: (n) => `${n} unreadable file(s): training skips them; replace or delete them`,
  empty: (n) => `${n} empty file(s) (no samples): training skips them`,
  missing: (n) => `${n} file(s) listed in manifest.json but missing on disk`,
  not_audio: (n) => `${n} non-audio file(s) in class folders (ignored by the loader)`,
  duplicates: (n) => `${n} group(s) of identical files (exact duplicates weigh a clip twice)`,
  manifest: () => "manifest.json could not be read",
};

const ENGINE_NAMES = { espeak: "espeak-ng", dectalk: "DECtalk", pico: "SVOX Pico" };
const ENGINE_FIXES = { dectalk: "run scripts/install_dectalk.sh", pico: "pip install 'hark-wakeword[pico]'" };

function listed(words) {
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words.at(-1)}` : words[0];
}

// Which engines synthesis uses here, and how to add the missing ones; leftOut: engines the
// licence-clean toggle leaves out (installed or not).
function enginesText(engines, leftOut = []) {
  const used = `${listed(engines.map((e) => ENGINE_NAMES[e]))} voices say the phrase, ordinary speech ` +
    "and sound-alike phrases; runs `hark synth`.";
  const missing = Object.keys(ENGINE_FIXES).filter((e) => !engines.includes(e) && !leftOut.includes(e));
  if (!missing.length) return used;
  return `${used} ${listed(missing.map((e) => ENGINE_NAMES[e]))} ${missing.length > 1 ? "are" : "is"} ` +
    `not installed, so models will generalize worse to unseen voices: ${missing.map((e) => ENGINE_FIXES[e]).join("; ")}.`;
}

// What the licence-clean toggle does, from the engines' licences the server reports.
function licenceText(defaults) {
  const left = Object.keys(defaults.licences).filter((e) => !defaults.licences[e].commercial_output)
    .map((e) => `${defaults.licences[e].name} (licence ${defaults.licences[e].licence})`);
  const kept = defaults.licence_clean_engines.map((e) => `${ENGINE_NAMES[e]} (${defaults.licences[e].licence})`);
  return `Only engines whose licences allow commercial use of their output: ${listed(kept)}; ` +
    `leaves out ${listed(left)}. The model's manifest and MODEL_CARD.md record it.`;
}

// "Hey Jarvis!" -> "hey_jarvis" (as studio.workspace.slug).
function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 64) || "untitled";
}

// A clip's length: "0.46 s", "12.3 s", "1m05s".
function fmtClip(s) { return s === null || s === undefined ? "?" : s < 60 ? `${s.toFixed(s < 10 ? 2 : 1)} s` : fmtSeconds(s); }

// A labelled input with a slot for the server's message about it. inline: the label's text
// beside the input (as a checkbox's), for a field that sits on one line with a checkbox.
function field(labelText, input, name, fields, { inline = false } = {}) {
  const error = el("span", { class: "error", "data-error-for": name });
  fields[name] = { input, error };
  // A <select> inside its <label> would be named after the label plus its chosen option.
  if (input.tagName === "SELECT" && !input.hasAttribute("aria-label")) input.setAttribute("aria-label", labelText);
  const wrapper = input.type === "checkbox" ? el("label", { class: "inline" }, input, labelText)
    : el("label", { class: inline ? "inline" : null }, labelText, input);
  return el("div", {}, wrapper, error);
}

function clearErrors(fields) {
  for (const { input, error } of Object.values(fields)) { error.textContent = ""; input.classList.remove("invalid"); }
}

// Put an ApiError next to its field (codes "invalid_<field>"), else toast it.
function showError(e, fields) {
  const name = (e.code || "").startsWith("invalid_") ? e.code.slice(8) : null;
  if (name && fields[name]) {
    fields[name].error.textContent = e.message;
    fields[name].input.classList.add("invalid");
  } else toast(e.message, true);
}

export async function init(section) {
  const defaults = await api("/api/data/defaults");
  let current = null;         // selected dataset name

  // -- dataset selector ---------------------------------------------------------------
  const picker = el("select", { "aria-label": "Dataset", onchange: () => select(picker.value) });
  const phraseNote = el("span", { class: "muted", "data-role": "phrase" });
  const createFields = {};
  const newName = el("input", { placeholder: "my_recordings", size: 16 });
  const createBox = el("div", { class: "row" }, field("New empty dataset", newName, "name", createFields),
    el("button", { class: "secondary", onclick: async () => {
      clearErrors(createFields);
      try { const { dataset } = await api("/api/data/create", { body: { name: newName.value } });
            newName.value = ""; await refreshDatasets(dataset); toast(`created dataset ${dataset}`); }
      catch (e) { showError(e, createFields); }
    } }, "Create"));

  async function refreshDatasets(want) {
    const { datasets } = await api("/api/datasets");
    const keep = want || current;
    picker.replaceChildren(...datasets.map((d) => el("option", { value: d.name }, d.name)));
    if (!datasets.length) { picker.append(el("option", { value: "" }, "(no datasets yet)")); }
    const chosen = datasets.find((d) => d.name === keep) || datasets[0];
    picker.value = chosen ? chosen.name : "";
    if (!chosen) { current = null; renderEmpty(); return; }
    phraseNote.textContent = chosen.phrase ? `phrase: "${chosen.phrase}"` : "hand-made dataset (no phrase in manifest.json)";
    if (chosen.name !== current || want) await select(chosen.name);
  }

  async function select(name) {
    current = name || null;
    importTarget.textContent = current || "(none)";
    healthTitle.textContent = current ? `Health of ${current}` : "Health";
    if (current) await Promise.all([loadHealth(), loadSamples(0)]);
  }

  // -- synthesis ----------------------------------------------------------------------
  const synthFields = {};
  const phrase = el("input", { placeholder: "hey jarvis", required: true });
  const name = el("input", { placeholder: "dataset name" });
  let nameEdited = false;
  phrase.addEventListener("input", () => { if (!nameEdited) name.value = phrase.value.trim() ? slug(phrase.value) : ""; });
  name.addEventListener("input", () => { nameEdited = name.value !== ""; });
  const number = (value, min) => el("input", { type: "number", min, value, step: 1, size: 7 });
  const positives = number(defaults.positives, 1), negatives = number(defaults.negatives, 1);
  const neighbours = number(defaults.neighbours, 1), seed = number(defaults.seed, 0);
  const withEval = el("input", { type: "checkbox", checked: defaults.eval });
  const evalMinutes = el("input", { type: "number", min: defaults.eval_minutes_range[0], step: 0.5,
                                    value: defaults.eval_minutes, size: 6 });
  withEval.addEventListener("change", () => { evalMinutes.disabled = !withEval.checked; });
  const overwrite = el("input", { type: "checkbox" });
  const licenceClean = el("input", { type: "checkbox", checked: defaults.licence_clean, "data-role": "licence-clean" });
  const enginesNote = el("p", { class: "muted", "data-role": "engines" }, enginesText(defaults.engines));
  const leftOut = Object.keys(defaults.licences).filter((e) => !defaults.licences[e].commercial_output);
  licenceClean.addEventListener("change", () => {
    enginesNote.textContent = licenceClean.checked ? enginesText(defaults.licence_clean_engines, leftOut)
      : enginesText(defaults.engines);
  });
  const synthJob = jobView("synth", { onUpdate: (job) => onJobChange("synth", job) });
  const synthCard = el("div", { class: "card", "data-card": "synth" }, el("h2", {}, "Synthesize a dataset"),
    enginesNote,
    el("div", { class: "row" }, field("Phrase", phrase, "phrase", synthFields), field("Dataset name", name, "name", synthFields)),
    el("div", { class: "row" }, field("Positives", positives, "positives", synthFields),
      field("Negatives", negatives, "negatives", synthFields),
      field("Phonetic neighbours", neighbours, "neighbours", synthFields), field("Seed", seed, "seed", synthFields)),
    el("div", { class: "row", style: "align-items:center" }, field("Evaluation sets", withEval, "eval", synthFields),
      field("Eval minutes", evalMinutes, "eval_minutes", synthFields, { inline: true })),
    el("div", { class: "row" },
      field("Licence-clean (training audio usable commercially)", licenceClean, "licence_clean", synthFields),
      el("span", { class: "muted", "data-role": "licence-note" }, licenceText(defaults))),
    el("div", { class: "row" },
      field("Overwrite (replaces its class folders, imported files too)", overwrite, "overwrite", synthFields)),
    el("div", { class: "row" }, el("button", { class: "primary", onclick: startSynth }, "Synthesize")),
    synthJob.element);

  async function startSynth() {
    clearErrors(synthFields);
    try {
      await api("/api/data/synth", { body: {
        phrase: phrase.value, name: name.value, positives: positives.value, negatives: negatives.value,
        neighbours: neighbours.value, seed: seed.value, eval: withEval.checked,
        eval_minutes: evalMinutes.value, licence_clean: licenceClean.checked, overwrite: overwrite.checked } });
      toast("synthesis started");
      await synthJob.refresh();
    } catch (e) { showError(e, synthFields); }
  }

  // -- import -------------------------------------------------------------------------
  const importFields = {};
  let picked = null;
  const sources = [];
  const pickedNote = el("span", { class: "muted", "data-role": "picked" }, "nothing selected");
  const sourceList = el("ul", { "data-role": "import-sources" });
  const browser = fileBrowser({ filter: (entry) => AUDIO.test(entry.name),
    onPick: (path) => { picked = path; pickedNote.textContent = `selected: ${path}`; } });
  const importTarget = el("strong", { "data-role": "import-target" });
  const label = el("select", { "aria-label": "Class to import into" }, ...defaults.labels.map((l) => el("option", { value: l }, CLASS_NAMES[l])));
  const sourcesError = el("span", { class: "error" });
  importFields.paths = { input: sourceList, error: sourcesError };
  const importJob = jobView("import", { onUpdate: (job) => onJobChange("import", job) });
  function renderSources() {
    sourceList.replaceChildren(...sources.map((s, i) => el("li", {}, s, " ",
      el("button", { class: "secondary", "aria-label": `remove ${s}`, onclick: () => { sources.splice(i, 1); renderSources(); } }, "×"))));
  }
  const importCard = el("div", { class: "card", "data-card": "import" }, el("h2", {}, "Import audio"),
    el("p", { class: "muted" }, "Click a folder or file, Add it, then Import: .wav, .flac and .ogg files are copied ",
      "(folders recursively) into <class>/imported/ without overwriting anything; other files are skipped and listed in the log. ",
      "Double-click a folder to open it; more folders are offered with `hark studio --root NAME=PATH`."),
    browser.element,
    el("div", { class: "row" }, pickedNote, el("button", { class: "secondary", onclick: () => {
      if (!picked) { toast("click a file or folder first", true); return; }
      if (!sources.includes(picked)) sources.push(picked);
      renderSources();
    } }, "Add selected")),
    sourceList, sourcesError,
    el("div", { class: "row" }, el("span", {}, "Into dataset ", importTarget),
      field("Class", label, "label", importFields),
      el("button", { class: "primary", onclick: startImport }, "Import")),
    importJob.element);

  async function startImport() {
    clearErrors(importFields);
    if (!current) { toast("choose or create a dataset first", true); return; }
    const paths = sources.length ? [...sources] : picked ? [picked] : [];
    try {
      await api("/api/data/import", { body: { dataset: current, label: label.value, paths } });
      sources.length = 0; renderSources();
      toast("import started");
      await importJob.refresh();
    } catch (e) { showError(e, importFields); }
  }

  // Reload what a finished job changed, once per job (not for jobs that ended before this page).
  const seen = {};
  async function onJobChange(kind, job) {
    const key = job ? `${job.id}:${job.state}` : "none";
    const before = seen[kind];
    seen[kind] = key;
    if (before === undefined || before === key || !job || job.state !== "done") return;
    if (kind === "synth") await refreshDatasets(job.meta.dataset);
    else if (job.meta.dataset === current) await select(current);
  }

  // -- health -------------------------------------------------------------------------
  const healthTitle = el("h2", {}, "Health");
  const healthBody = el("div", { "data-role": "health" });
  const healthCard = el("div", { class: "card", "data-card": "health" }, el("div", { class: "row" }, healthTitle,
    el("button", { class: "secondary", onclick: () => loadHealth() }, "Check again")), healthBody);

  function renderEmpty() {
    healthBody.replaceChildren(el("p", { class: "muted" }, "No dataset yet: synthesize one, or create an empty one and import audio."));
    samplesBody.replaceChildren();
  }

  async function loadHealth() {
    if (!current) return;
    const name = current;
    healthBody.replaceChildren(el("p", { class: "muted" }, "checking…"));
    let report;
    try { report = await api(`/api/data/health?dataset=${encodeURIComponent(name)}`); }
    catch (e) { healthBody.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    if (name !== current) return;
    renderHealth(report);
    for (const option of classPicker.options) {
      const row = report.classes[option.value];
      option.textContent = `${CLASS_NAMES[option.value]} (${row ? row.total : 0})`;
    }
  }

  function renderHealth(r) {
    const dur = (s) => (s === null ? "–" : s < 60 ? `${s.toFixed(s < 10 ? 2 : 1)} s` : fmtSeconds(s));
    // JSON objects arrive with sorted keys: show the classes in the dataset layout's order.
    const rows = defaults.labels.map((cls) => [cls, r.classes[cls]]).map(([cls, c]) => el("tr", { "data-class": cls },
      el("td", {}, CLASS_NAMES[cls]), el("td", {}, c.train), el("td", {}, c.val), el("td", {}, c.test),
      el("td", { "data-col": "total" }, c.total), el("td", {}, dur(c.seconds)), el("td", {}, dur(c.min_s)), el("td", {}, dur(c.max_s))));
    const table = el("table", { "data-role": "health-table" },
      el("thead", {}, el("tr", {}, ...["Class", "train", "val", "test", "files", "duration", "shortest", "longest"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows,
        el("tr", {}, el("th", {}, "all"), el("td"), el("td"), el("td"), el("th", { "data-col": "total" }, r.totals.files),
          el("th", {}, dur(r.totals.seconds)), el("td"), el("td"))));
    const evals = Object.entries(r.eval);
    const evalLine = evals.length
      ? el("p", { class: "muted" }, "Evaluation sets: ", evals.map(([n, e]) => `${n}: ${e.positives} positives, ${(e.negative_seconds / 60).toFixed(1)} min of negative audio`).join("; "))
      : el("p", { class: "muted" }, "No evaluation sets (eval/): synthesize with Evaluation sets on to measure FA/h.");
    const problems = Object.keys(PROBLEM_TITLES).map((k) => [k, r.problem_counts[k] || 0]).filter(([, n]) => n > 0);
    const problemBox = el("div", { "data-role": "problems" }, el("h3", {}, "Problems"),
      problems.length ? problems.map(([kind, n]) => renderProblem(kind, n, r))
        : el("p", { class: "ok" }, "No problems found."));
    healthBody.replaceChildren(...[
      r.phrase ? el("p", {}, `Phrase: "${r.phrase}"`) : null, table, evalLine, problemBox,
      r.truncated ? el("p", { class: "problem" }, `Only the first ${r.max_files} files were checked.`) : null,
    ].filter(Boolean));
  }

  function renderProblem(kind, count, r) {
    const entries = r.problems[kind];
    const items = entries.map((p) => {
      if (kind === "duplicates") {
        return el("li", {}, `${p.paths.length} identical files (${fmtBytes(p.bytes)} each)`,
          p.classes.length > 1 ? el("strong", {}, ` in different classes (${p.classes.join(", ")})`) : null, ": ",
          p.paths.join(", "));
      }
      if (kind === "sample_rate") return el("li", {}, `${p.path}: ${p.sample_rate} Hz, ${p.channels} channel(s)`);
      return el("li", {}, [p.path, p.detail].filter(Boolean).join(": "));
    });
    const more = count > entries.length ? el("li", { class: "muted" }, `… and ${count - entries.length} more`) : null;
    return el("div", { class: "problem", "data-problem": kind },
      el("strong", {}, PROBLEM_TITLES[kind](count, r.sample_rate_hz)), el("ul", {}, items, more));
  }

  // -- listen -------------------------------------------------------------------------
  const classPicker = el("select", { "aria-label": "Class to listen to", onchange: () => loadSamples(0) },
    ...defaults.labels.map((l) => el("option", { value: l }, CLASS_NAMES[l])));
  const samplesBody = el("div", { "data-role": "samples" });
  const listenCard = el("div", { class: "card", "data-card": "listen" }, el("h2", {}, "Listen"),
    el("div", { class: "row" }, el("label", {}, "Class", classPicker)), samplesBody);

  async function loadSamples(offset) {
    if (!current) return;
    let page;
    try {
      page = await api(`/api/data/samples?dataset=${encodeURIComponent(current)}&label=${classPicker.value}&offset=${offset}&limit=${PAGE}`);
    } catch (e) { samplesBody.replaceChildren(el("p", { class: "error" }, e.message)); return; }
    if (!page.total) { samplesBody.replaceChildren(el("p", { class: "muted" }, "No files in this class.")); return; }
    const last = Math.min(page.offset + page.files.length, page.total);
    samplesBody.replaceChildren(
      el("table", {}, el("tbody", {}, page.files.map((f) => el("tr", {},
        el("td", {}, f.name), el("td", { "data-col": "duration" }, fmtClip(f.seconds)), el("td", { class: "muted" }, fmtBytes(f.bytes)),
        el("td", {}, f.path ? el("audio", { controls: true, preload: "metadata", src: `/api/audio?path=${encodeURIComponent(f.path)}` })
          : el("span", { class: "muted" }, "a link out of the browsable folders: not played")))))),
      el("div", { class: "row" },
        el("button", { class: "secondary", disabled: page.offset === 0, onclick: () => loadSamples(Math.max(0, page.offset - PAGE)) }, "Previous"),
        el("span", { class: "muted" }, `files ${page.offset + 1}–${last} of ${page.total}`),
        el("button", { class: "secondary", disabled: last >= page.total, onclick: () => loadSamples(page.offset + PAGE) }, "Next")));
  }

  section.append(
    el("div", { class: "card", "data-card": "datasets" }, el("h2", {}, "Dataset"),
      el("div", { class: "row" }, el("label", {}, "Dataset", picker),
        el("button", { class: "secondary", onclick: () => refreshDatasets() }, "Refresh"), phraseNote),
      createBox),
    el("div", { style: "display:grid;grid-template-columns:1fr 1fr;gap:1rem;align-items:start" }, synthCard, importCard),
    healthCard, listenCard);

  await browser.open("");
  await refreshDatasets();
  section.addEventListener("panel-shown", () => refreshDatasets().catch((e) => toast(e.message, true)));
  poll(async () => {
    if (section.hidden) return;
    await Promise.all([synthJob.refresh(), importJob.refresh()]);
  }, 1000);
}
