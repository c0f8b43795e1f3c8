// Evaluation panel: evaluate an exported run on a dataset's eval sets, show metrics and the
// DET curve, pick a threshold for a target FA/h and store it, and score a file or the
// microphone over time.
import { api, el, jobView, poll, toast } from "../api.js";
import { lineChart } from "../chart.js";
import { recordWav } from "../recorder.js";

// The DET curve's x axis is logarithmic: sweep rows with 0 FA/h are drawn at this rate.
const ZERO_FA_DRAWN_AT = 0.01;
const DEFAULT_TARGET_FA = 0.5;
const DEFAULT_RECORD_S = 3;
const MAX_RECORD_S = 60;
const PICK_DEBOUNCE_MS = 150;
const POLL_MS = 1000;

const pct = (v) => (v === null || v === undefined ? "n/a" : `${(100 * v).toFixed(1)}%`);
const rate = (v) => (v === null || v === undefined ? "n/a" : (+v).toFixed(v >= 100 ? 0 : 2));
const labelled = (text, control) => el("label", {}, text, control);

// A set's threshold sweep as the achievable DET curve, [[FA/h, FRR %], ...]: sorted by FA/h,
// each point's FRR is the lowest of any threshold at that or a lower FA/h, drawn as steps.
function lowerEnvelope(sweep) {
  const rows = [...sweep].sort((a, b) => a.fa_per_hour - b.fa_per_hour || a.frr - b.frr);
  const points = [];
  let best = Infinity;
  for (const row of rows) {
    if (row.frr >= best) continue;
    const x = Math.max(row.fa_per_hour, ZERO_FA_DRAWN_AT);
    if (points.length) points.push([x, 100 * best]); // hold the previous best up to this FA/h
    best = row.frr;
    points.push([x, 100 * best]);
  }
  if (rows.length) points.push([Math.max(rows[rows.length - 1].fa_per_hour, ZERO_FA_DRAWN_AT), 100 * best]);
  return points;
}

export async function init(section) {
  let report = null; // GET /api/eval/report answer for the selected run
  let lastJobKey = null; // "id:state" of the eval job at the last refresh

  // -- evaluate -------------------------------------------------------------------------
  const runSelect = el("select", { onchange: () => selectRun() });
  const datasetSelect = el("select");
  const evalTarget = el("input", { type: "number", min: 0, step: "any", value: DEFAULT_TARGET_FA });
  const evalError = el("div", { class: "error", "data-role": "eval-error" });
  const evaluateButton = el("button", { class: "primary", onclick: evaluate }, "Evaluate");
  const job = jobView("eval", { onUpdate: jobChanged });

  // -- results --------------------------------------------------------------------------
  const resultsTitle = el("h2", {}, "Results");
  const summary = el("div", { "data-role": "eval-summary" });
  const metrics = el("div", { "data-role": "metrics" });
  const det = el("div", { "data-role": "det" });

  // -- threshold picker -----------------------------------------------------------------
  const pickTarget = el("input", { type: "number", min: 0, step: "any", value: DEFAULT_TARGET_FA, oninput: () => {
    const v = Number(pickTarget.value);
    if (v > 0) slider.value = Math.log10(v);
    schedulePick();
  } });
  const slider = el("input", { type: "range", min: -2, max: 3, step: 0.01, value: Math.log10(DEFAULT_TARGET_FA),
    oninput: () => { pickTarget.value = String(+(10 ** Number(slider.value)).toPrecision(2)); schedulePick(); } });
  const picked = el("div", { "data-role": "picked" });
  const pickError = el("div", { class: "error" });
  const storeButton = el("button", { class: "primary", onclick: storeThreshold, disabled: true }, "Store threshold in manifest");
  const stored = el("div", { "data-role": "stored" });
  const picker = el("div", { class: "card", hidden: true },
    el("h2", {}, "Threshold for a target false-accept rate"),
    el("p", { class: "muted" }, "The threshold is chosen on the training voices' set, as `hark eval` does; the table shows what it costs on every set."),
    el("div", { class: "row" }, labelled("Target false accepts per hour", pickTarget),
      labelled("Target (log scale)", slider), storeButton),
    pickError, picked, stored);

  // -- test a model ---------------------------------------------------------------------
  const fileInput = el("input", { type: "file", accept: "audio/*,.wav,.flac,.ogg" });
  const seconds = el("input", { type: "number", min: 1, max: MAX_RECORD_S, step: 1, value: DEFAULT_RECORD_S });
  const recordButton = el("button", { class: "secondary", onclick: record }, "Record from microphone");
  const scoreStatus = el("div", { class: "muted", "data-role": "score-status" });
  const scoreError = el("div", { class: "error", "data-role": "score-error" });
  const scoreChart = el("div", { "data-role": "scores" });
  const player = el("audio", { controls: true, hidden: true });

  section.append(
    el("div", { class: "card" }, el("h2", {}, "Evaluate a model"),
      el("p", { class: "muted" }, "Scores every eval set of the dataset (wake words laid end to end, and a long negative stream) with the sentry's own detector."),
      el("div", { class: "row" }, labelled("Model (run)", runSelect), labelled("Dataset", datasetSelect),
        labelled("Target FA/h for the recommended threshold", evalTarget), evaluateButton),
      evalError, job.element),
    el("div", { class: "card" }, resultsTitle, summary, metrics, det),
    picker,
    el("div", { class: "card" }, el("h2", {}, "Test the model"),
      el("p", { class: "muted" }, "Score a recording (WAV, FLAC or OGG; any rate; up to 10 minutes) or the microphone; detections use the manifest's threshold."),
      el("div", { class: "row" }, labelled("Audio file", fileInput),
        el("button", { class: "secondary", onclick: scoreFile }, "Score file"),
        labelled("Seconds to record", seconds), recordButton),
      scoreStatus, scoreError, scoreChart, player));

  async function loadLists() {
    const [{ runs }, { datasets }] = await Promise.all([api("/api/runs"), api("/api/datasets")]);
    fill(runSelect, runs.filter((r) => r.exported).map((r) => [r.name, `${r.name}${r.wake_word ? ` (${r.wake_word})` : ""}${r.evaluated ? "" : ", not evaluated"}`]),
      "no exported run yet: export one in the Export panel");
    fill(datasetSelect, datasets.filter((d) => d.has_eval).map((d) => [d.name, d.phrase ? `${d.name} (${d.phrase})` : d.name]),
      "no dataset with eval sets yet");
  }

  function fill(select, options, emptyText) {
    const previous = select.value;
    select.replaceChildren(...(options.length ? options.map(([value, text]) => el("option", { value }, text))
      : [el("option", { value: "", disabled: true }, emptyText)]));
    if (options.some(([value]) => value === previous)) select.value = previous;
  }

  async function evaluate() {
    evalError.textContent = "";
    try {
      await api("/api/eval", { body: { run: runSelect.value, dataset: datasetSelect.value, target_fa: evalTarget.value } });
      toast(`evaluating ${runSelect.value}`);
      await job.refresh();
    } catch (e) { evalError.textContent = e.message; }
  }

  function jobChanged(j) {
    const running = !!j && (j.state === "running" || j.state === "stopping");
    evaluateButton.disabled = running;
    // Reload when a job finishes while the page watches (not for one that ended before).
    const key = j ? `${j.id}:${j.state}` : "none";
    const finished = lastJobKey !== null && key !== lastJobKey && j && j.state === "done";
    lastJobKey = key;
    if (finished) {
      loadLists().then(() => { if (j.meta.run === runSelect.value) return loadReport(); }).catch((e) => toast(e.message, true));
    }
  }

  async function selectRun() {
    scoreChart.replaceChildren(); scoreStatus.textContent = ""; scoreError.textContent = ""; player.hidden = true;
    await loadReport();
  }

  let reportSeq = 0;
  async function loadReport() {
    const run = runSelect.value, seq = ++reportSeq;
    let answer = null, problem = null;
    if (run) {
      try { answer = await api(`/api/eval/report?run=${encodeURIComponent(run)}`); } catch (e) { problem = e.message; }
    }
    if (seq !== reportSeq) return; // the user picked another run meanwhile
    report = answer;
    summary.replaceChildren(); metrics.replaceChildren(); det.replaceChildren(); stored.textContent = "";
    picker.hidden = true;
    resultsTitle.textContent = run ? `Results for ${run}` : "Results";
    if (!run) { summary.append(el("p", { class: "muted" }, "Export a run first (Export panel).")); return; }
    if (problem) { summary.append(el("p", { class: "error" }, problem)); return; }
    const r = report.report;
    if (!r) {
      summary.append(el("p", { class: "muted" }, `${run} has not been evaluated yet; its manifest threshold is ${report.threshold}. Press Evaluate.`));
      return;
    }
    summary.append(el("p", {},
      "Recommended threshold ", el("strong", { "data-role": "recommended" }, String(r.operating_threshold)),
      ` (chosen on '${r.chosen_on}' for ≤ ${r.target_fa_per_hour} FA/h); the manifest's threshold is `,
      el("strong", { "data-role": "manifest-threshold" }, String(report.threshold)), "."));
    if (report.stale) summary.append(el("p", { class: "problem" }, "The model was exported again after this evaluation: evaluate it again."));
    metrics.append(el("table", {},
      el("thead", {}, el("tr", {}, ...["Eval set", "Positives", "Negative audio", "FRR", "FA/h",
        "FRR at ≤ 0.5 FA/h", "FRR at ≤ 1 FA/h"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...r.sets.map((s) => el("tr", { "data-set": s.name }, el("td", {}, s.name), el("td", {}, s.n_positive),
        el("td", {}, `${(60 * s.negative_hours).toFixed(1)} min`), el("td", {}, pct(s.frr)), el("td", {}, rate(s.fa_per_hour)),
        el("td", {}, pct(s.frr_at_fa["0.5"])), el("td", {}, pct(s.frr_at_fa["1.0"])))))));
    const maxFa = Math.max(1, ...r.sets.flatMap((s) => s.sweep.map((row) => row.fa_per_hour)));
    slider.max = Math.ceil(Math.log10(maxFa) * 10) / 10;
    picker.hidden = false;
    drawDet();
    await pick();
  }

  function drawDet(target) {
    const r = report && report.report;
    if (!r) return;
    const series = r.sets.map((s) => ({ name: s.name, points: lowerEnvelope(s.sweep) }));
    const oneFa = Math.min(...r.sets.map((s) => 1 / s.negative_hours));
    det.replaceChildren(el("h3", {}, "DET curve (lower left is better)"),
      lineChart({ series, logX: true, xLabel: "false accepts per hour", yLabel: "false reject rate (%)", yMin: 0, yMax: 100,
        xMin: ZERO_FA_DRAWN_AT, width: 720, height: 300,
        markers: target !== undefined ? [{ x: Math.max(target, ZERO_FA_DRAWN_AT), label: "target" }] : [] }),
      el("p", { class: "muted", "data-role": "det-caption" }, "Each curve is the best a threshold achieves: at every FA/h, the ",
        "lowest FRR of any threshold with at most that many false accepts per hour. (At very low thresholds the detector ",
        "fires nonstop and its refractory period swallows wake words, so the raw sweep's FRR rises again there; no one ",
        `would pick such a threshold.) 0 FA/h is drawn at ${ZERO_FA_DRAWN_AT}; one false accept in the shortest negative `,
        `stream is ${rate(oneFa)} FA/h.`));
  }

  let pickTimer = null, pickSeq = 0;
  function schedulePick() { clearTimeout(pickTimer); pickTimer = setTimeout(pick, PICK_DEBOUNCE_MS); }

  async function pick() {
    const seq = ++pickSeq, run = runSelect.value;
    pickError.textContent = "";
    pickTarget.classList.remove("invalid");
    try {
      const p = await api(`/api/eval/threshold?run=${encodeURIComponent(run)}&target_fa=${encodeURIComponent(pickTarget.value)}`);
      if (seq !== pickSeq) return; // a newer pick is on its way
      picked.replaceChildren(
        el("p", {}, "Threshold ", el("strong", { "data-role": "picked-threshold" }, String(p.threshold)),
          ` (chosen on '${p.chosen_on}'`, p.met ? ")" : "; no threshold reaches this target there, this is the fewest false accepts)"),
        el("table", {}, el("thead", {}, el("tr", {}, ...["Eval set", "FRR at this threshold", "FA/h at this threshold",
          "Best FRR this set reaches at the target"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...Object.entries(p.sets).map(([name, s]) => el("tr", { "data-set": name }, el("td", {}, name),
          el("td", {}, pct(s.frr)), el("td", {}, rate(s.fa_per_hour)), el("td", {}, pct(s.best_frr_at_target)))))));
      storeButton.disabled = false;
      storeButton.dataset.threshold = p.threshold;
      drawDet(p.target_fa_per_hour);
    } catch (e) {
      if (seq !== pickSeq) return;
      pickError.textContent = e.message;
      pickTarget.classList.add("invalid");
      storeButton.disabled = true;
    }
  }

  async function storeThreshold() {
    try {
      const answer = await api("/api/eval/threshold", { body: { run: runSelect.value, target_fa: pickTarget.value } });
      stored.replaceChildren(el("p", { class: "ok" }, `Stored in ${answer.manifest}: threshold ${answer.before} → ${answer.after}.`));
      report.threshold = answer.after;
      const shown = summary.querySelector('[data-role="manifest-threshold"]');
      if (shown) shown.textContent = String(answer.after);
    } catch (e) { stored.replaceChildren(el("p", { class: "error" }, e.message)); }
  }

  // -- scoring ----------------------------------------------------------------------------
  async function scoreFile() {
    const file = fileInput.files[0];
    if (!file) { scoreError.textContent = "choose an audio file first"; return; }
    await scoreBlob(file, file.name);
  }

  async function record() {
    scoreError.textContent = "";
    const s = Number(seconds.value);
    if (!(s >= 1 && s <= MAX_RECORD_S)) { scoreError.textContent = `record between 1 and ${MAX_RECORD_S} seconds`; return; }
    recordButton.disabled = true;
    try {
      scoreStatus.textContent = "recording…";
      const wav = await recordWav(s, { onProgress: (t, level) => {
        scoreStatus.textContent = `recording… ${t.toFixed(1)} / ${s} s, level ${"▮".repeat(Math.round(level * 10)).padEnd(10, "▯")}`;
      } });
      await scoreBlob(wav, `microphone-${new Date().toISOString().slice(11, 19).replaceAll(":", "")}.wav`);
    } catch (e) { scoreStatus.textContent = ""; scoreError.textContent = e.message; }
    finally { recordButton.disabled = false; }
  }

  async function scoreBlob(blob, name) {
    scoreError.textContent = "";
    scoreStatus.textContent = `scoring ${name}…`;
    const form = new FormData();
    form.append("run", runSelect.value);
    form.append("file", blob, name);
    let answer;
    try { answer = await api("/api/eval/score", { form }); }
    catch (e) { scoreStatus.textContent = ""; scoreError.textContent = e.message; return; }
    const { input } = answer;
    const found = answer.detections.length
      ? `${answer.detections.length} detection(s) of '${answer.wake_word}' at ${answer.detections.map((d) => `${d.time_s.toFixed(2)} s`).join(", ")}`
      : `no detection of '${answer.wake_word}'`;
    scoreStatus.textContent = `${answer.file}: ${input.seconds.toFixed(1)} s (${input.sample_rate} Hz, ${input.channels} channel${input.channels > 1 ? "s" : ""}); ${found} at threshold ${answer.threshold}.`;
    const end = answer.times_s.length ? answer.times_s[answer.times_s.length - 1] : answer.seconds;
    scoreChart.replaceChildren(lineChart({
      series: [
        { name: "score", points: answer.times_s.map((t, i) => [t, answer.scores[i]]), color: "#93c5fd" },
        { name: "smoothed", points: answer.times_s.map((t, i) => [t, answer.smoothed[i]]), color: "#2563eb" },
        { name: `threshold ${answer.threshold}`, points: [[0, answer.threshold], [end, answer.threshold]], color: "#dc2626" },
      ],
      xLabel: "time (s)", yLabel: "score", yMin: 0, yMax: 1, xMin: 0, xMax: end, width: 720, height: 260,
      markers: answer.detections.map((d) => ({ x: d.time_s, label: "detected" })),
    }));
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
  }

  section.addEventListener("panel-shown", async () => {
    const before = runSelect.value;
    try { await loadLists(); } catch (e) { toast(e.message, true); return; }
    if (runSelect.value !== before) await selectRun();
    else await loadReport(); // another panel may have re-exported or re-evaluated it
  });
  await loadLists();
  await loadReport();
  poll(async () => { if (!section.hidden) await job.refresh(); }, POLL_MS);
}
