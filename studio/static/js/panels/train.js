// Training panel: start / stop / resume `hark train` as a background job, live per-epoch charts
// from runs/RUN/metrics.jsonl, progress with ETA, and the log. The job outlives the tab; opening
// the page again reattaches to the newest train job.
import { api, el, toast, poll, fmtSeconds, jobView } from "../api.js";
import { lineChart } from "../chart.js";

const POLL_MS = 1500;

export async function init(section) {
  const configSelect = el("select", { "aria-label": "Config" });
  const datasetSelect = el("select", { "aria-label": "Dataset" });
  const runBox = el("input", { type: "text", "aria-label": "Run name", size: 24, placeholder: "e.g. hey_jarvis_1" });
  const problems = el("div", { class: "problem", role: "alert", "data-role": "train-problems" });
  const startButton = el("button", { class: "primary", onclick: () => start(false) }, "Start");
  const resumeButton = el("button", { class: "secondary", onclick: () => start(true) }, "Resume");
  const startCard = el("div", { class: "card" }, el("h2", {}, "Start a run"),
    el("div", { class: "row" },
      el("label", {}, "Config", configSelect), el("label", {}, "Dataset", datasetSelect),
      el("label", {}, "Run name (runs/NAME)", runBox), startButton, resumeButton),
    el("div", { class: "muted" }, "Start checks the config first (the Config panel's checks). Checkpoints are saved once per " +
      "epoch: Stop interrupts the run cleanly and keeps its last completed epoch, so the epoch in progress is lost; " +
      "Resume continues the named run from there with the run's own config (runs/NAME/config.toml). A run keeps going " +
      "when this tab is closed; reopening the page reattaches to it."),
    problems);

  const runTitle = el("h2", { "data-role": "run-title" }, "No run yet");
  const overallBar = el("progress", { max: 100, value: 0, "aria-label": "Run progress" });
  const overallText = el("div", { class: "muted", "data-role": "run-progress" });
  // The job's bar is the epoch in progress; the run's own line above gives the whole run's ETA.
  const jobs = jobView("train", { progressLabel: "this epoch" });
  const lossBox = el("div", { "data-role": "loss-chart" });
  const metricBox = el("div", { "data-role": "metric-chart" });
  const table = el("table", { "data-role": "epochs" });
  const tableBox = el("div", { style: "max-height:14rem;overflow:auto" }, table);
  const runCard = el("div", { class: "card" }, runTitle, overallBar, overallText, jobs.element);
  const chartCard = el("div", { class: "card" }, el("h2", {}, "Per-epoch metrics"),
    el("div", { class: "row", style: "align-items:start" },
      el("div", {}, el("h3", {}, "Loss"), lossBox),
      el("div", {}, el("h3", {}, "Validation error rates at threshold 0.5"), metricBox)),
    tableBox);
  const runsList = el("div", { "data-role": "runs-list" });
  section.append(startCard, runCard, chartCard, el("div", { class: "card" }, el("h2", {}, "Runs in this workspace"),
    el("div", { class: "muted" }, "Click a run to show its charts."), runsList));

  let viewRun = null;  // null: follow the current train job's run
  let shown = "";      // what the charts show now (run + number of epochs)
  let formTouched = false;  // once the user edits the form, reattaching no longer fills it
  for (const control of [configSelect, datasetSelect, runBox]) control.addEventListener("input", () => { formTouched = true; });

  function draw(run, metrics) {
    const key = `${run}:${metrics.length}`;
    if (key === shown) return false;
    shown = key;
    const series = (name, field) => ({ name, points: metrics.map((m) => [m.epoch, m[field]]) });
    lossBox.replaceChildren(lineChart({ series: [series("train_loss", "train_loss"), series("val_loss", "val_loss")],
      xLabel: "epoch", yLabel: "loss", integerX: true }));
    metricBox.replaceChildren(lineChart({ series: [series("val FRR", "val_frr@0.5"), series("val FAR", "val_far@0.5")],
      xLabel: "epoch", yLabel: "error rate", yMin: 0, integerX: true }));
    const fmt = (v) => (typeof v === "number" ? v.toFixed(4) : "");
    table.replaceChildren(el("tr", {}, ["epoch", "train loss", "val loss", "val FRR@0.5", "val FAR@0.5"].map((h) => el("th", {}, h))),
      ...metrics.map((m) => el("tr", {}, [m.epoch, fmt(m.train_loss), fmt(m.val_loss), fmt(m["val_frr@0.5"]), fmt(m["val_far@0.5"])]
        .map((v) => el("td", {}, String(v))))));
    return true;
  }

  // A reattached page shows what the running job was started with.
  function showJobSettings(meta) {
    if (meta.run) runBox.value = meta.run;
    if (meta.dataset && [...datasetSelect.options].some((o) => o.value === meta.dataset)) datasetSelect.value = meta.dataset;
    if (!meta.resume) configSelect.value = meta.config || "";
  }

  async function refreshStatus() {
    const data = await api(`/api/train/status${viewRun ? `?run=${encodeURIComponent(viewRun)}` : ""}`);
    const job = data.job;
    const running = job && (job.state === "running" || job.state === "stopping");
    startButton.disabled = resumeButton.disabled = Boolean(running);
    if (running && !formTouched) showJobSettings(job.meta);
    if (!data.run) { runTitle.textContent = "No run yet"; overallText.textContent = ""; return draw("", []); }
    const ours = job && job.meta.run === data.run;
    runTitle.textContent = `Run: ${data.run}` + (ours ? ` (${job.state})` : "");
    runTitle.dataset.run = data.run;
    const o = data.overall;
    overallBar.value = o ? o.percent : 0;
    overallText.textContent = o ? `${o.done} of ${o.epochs} epoch(s) finished` +
      (ours && running ? `; epoch ${o.epoch} in progress, ${o.percent}% of the run` +
        (o.eta_s !== null ? `; run: about ${fmtSeconds(o.eta_s)} left` : "") : "") : "";
    return draw(data.run, data.metrics);
  }

  async function refreshLists() {
    const [{ configs }, { datasets }, { runs }] = await Promise.all([
      api("/api/config/list"), api("/api/datasets"), api("/api/train/runs")]);
    const runState = (r) => (r.running ? ", running" : r.complete ? ", complete" : r.resumable ? ", resumable" : "");
    const keep = (select, options) => {
      const current = select.value;
      select.replaceChildren(...options);
      if ([...select.options].some((o) => o.value === current)) select.value = current;
    };
    keep(configSelect, [el("option", { value: "" }, "(defaults)"), ...configs.map((c) => el("option", { value: c.name }, c.file))]);
    keep(datasetSelect, datasets.length ? datasets.map((d) => el("option", { value: d.name }, d.name + (d.phrase ? ` ("${d.phrase}")` : "")))
      : [el("option", { value: "" }, "(no datasets: make one in the Data panel)")]);
    runsList.replaceChildren(...runs.map((r) => el("div", { class: "row", "data-run": r.name },
      el("button", { class: "secondary", onclick: () => { viewRun = r.name; shown = ""; if (!formTouched) runBox.value = r.name; refreshStatus(); } }, r.name),
      el("span", { class: "muted", "data-role": "run-state" }, `${r.epochs_done}${r.epochs ? ` of ${r.epochs}` : ""} epoch(s)${runState(r)}`))));
    if (!runs.length) runsList.append(el("div", { class: "muted" }, "none yet"));
    if (!runBox.value && datasetSelect.value) {
      const taken = new Set(runs.map((r) => r.name));
      let n = 1;
      while (taken.has(`${datasetSelect.value}_${n}`)) n++;
      runBox.value = `${datasetSelect.value}_${n}`;
    }
  }

  async function start(resume) {
    problems.replaceChildren();
    try {
      await api("/api/train/start", { body: { config: configSelect.value, dataset: datasetSelect.value, run: runBox.value.trim(), resume } });
      viewRun = runBox.value.trim();
      shown = "";
      toast(`${resume ? "resuming" : "training"} runs/${viewRun}`);
      await Promise.all([jobs.refresh(), refreshStatus(), refreshLists()]);
    } catch (e) {
      problems.append(el("div", {}, e.message));
      toast(e.message, true);
    }
  }

  let lastState = null;
  await refreshLists();
  poll(async () => {
    if (section.hidden) return;
    const job = await jobs.refresh();
    const newEpoch = await refreshStatus();
    // The runs list changes when an epoch finishes or a run ends.
    if (newEpoch || (job && lastState && lastState !== job.state)) await refreshLists();
    lastState = job ? job.state : null;
  }, POLL_MS);
  section.addEventListener("panel-shown", () => refreshLists().catch((e) => toast(e.message, true)));
}
