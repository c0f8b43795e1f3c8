// Export panel: export a run's best checkpoint to ONNX, show the manifest, download the
// model folder as a zip or the manifest alone.
import { api, el, fmtBytes, fmtCount, jobView, poll, toast } from "../api.js";

const POLL_MS = 1000;

// The manifest's ISO 8601 time in the viewer's own time zone and words; the ISO text on hover.
function localTime(iso) {
  const when = new Date(iso);
  if (!iso || Number.isNaN(when.getTime())) return iso || "n/a";
  return el("time", { datetime: iso, title: iso }, when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }));
}
const pct = (v) => (v === null || v === undefined ? "n/a" : `${(100 * v).toFixed(1)}%`);

export async function init(section) {
  let lastJobKey = null; // "id:state" of the export job at the last refresh

  const runSelect = el("select", { onchange: () => loadManifest() });
  const exportButton = el("button", { class: "primary", onclick: startExport }, "Export");
  const exportError = el("div", { class: "error", "data-role": "export-error" });
  const job = jobView("export", { onUpdate: jobChanged });
  const title = el("h2", {}, "Exported model");
  const body = el("div", { "data-role": "manifest" });

  section.append(
    el("div", { class: "card" }, el("h2", {}, "Export a run"),
      el("p", { class: "muted" }, "Writes runs/RUN/export: features.onnx, model.onnx, model.int8.onnx, clip.onnx and manifest.json, each checked against the PyTorch model."),
      el("div", { class: "row" }, el("label", {}, "Run", runSelect), exportButton), exportError, job.element),
    el("div", { class: "card" }, title, body));

  async function loadRuns() {
    const { runs } = await api("/api/runs");
    const usable = runs.filter((r) => r.has_checkpoint || r.exported);
    const previous = runSelect.value;
    runSelect.replaceChildren(...(usable.length
      ? usable.map((r) => el("option", { value: r.name }, `${r.name}${r.exported ? " (exported)" : r.has_checkpoint ? " (not exported yet)" : ""}`))
      : [el("option", { value: "", disabled: true }, "no trained run yet: train one in the Training panel")]));
    if (usable.some((r) => r.name === previous)) runSelect.value = previous;
  }

  async function startExport() {
    exportError.textContent = "";
    try {
      await api("/api/export", { body: { run: runSelect.value } });
      toast(`exporting ${runSelect.value}`);
      await job.refresh();
    } catch (e) { exportError.textContent = e.message; }
  }

  function jobChanged(j) {
    exportButton.disabled = !!j && (j.state === "running" || j.state === "stopping");
    const key = j ? `${j.id}:${j.state}` : "none";
    const finished = lastJobKey !== null && key !== lastJobKey && j && j.state === "done";
    lastJobKey = key;
    if (finished) {
      loadRuns().then(() => { if (j.meta.run === runSelect.value) return loadManifest(); }).catch((e) => toast(e.message, true));
    }
  }

  let manifestSeq = 0;
  async function loadManifest() {
    const run = runSelect.value, seq = ++manifestSeq;
    let data = null, problem = null;
    if (run) {
      try { data = await api(`/api/export/manifest?run=${encodeURIComponent(run)}`); } catch (e) { problem = e; }
    }
    if (seq !== manifestSeq) return; // another run was picked meanwhile
    title.textContent = run ? `Exported model: ${run}` : "Exported model";
    body.replaceChildren();
    if (!run) return;
    if (problem) { body.append(el("p", { class: problem.code === "not_exported" ? "muted" : "error" }, problem.message)); return; }
    const m = data.manifest, q = `run=${encodeURIComponent(run)}`;
    const sizes = m.metrics.size_bytes || {};
    const evaluation = m.metrics.evaluation;
    const rows = [
      ["Wake word", m.wake_word], ["Architecture", m.architecture], ["Parameters", fmtCount(m.parameters)],
      ["Threshold", m.threshold], ["Smoothing", `${m.smoothing_hops} hops`], ["Refractory period", `${m.refractory_s} s`],
      ["Window", `${m.window_samples / m.sample_rate} s at ${m.sample_rate} Hz, hop ${m.hop_samples / m.sample_rate * 1000} ms`],
      ["Best epoch", m.metrics.best_epoch ?? "n/a"], ["Validation loss", m.metrics.val_loss?.toFixed?.(4) ?? "n/a"],
      ["model.onnx", sizes.model ? fmtBytes(sizes.model) : "n/a"], ["model.int8.onnx", sizes.model_int8 ? fmtBytes(sizes.model_int8) : "n/a"],
      ["Config hash", m.config_hash], ["Created", localTime(m.created)],
    ];
    body.append(
      el("div", { class: "row" },
        el("a", { href: `/api/export/download?${q}`, download: `${run}-export.zip`, "data-role": "download-zip" }, `Download ${run}-export.zip`),
        el("a", { href: `/api/export/manifest.json?${q}`, download: "manifest.json", "data-role": "download-manifest" }, "Download manifest.json")),
      el("table", { "data-role": "manifest-table", style: "width: auto" }, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v instanceof Node ? v : String(v)))))),
      evaluation && evaluation.sets ? el("div", {}, el("h3", {}, `Evaluation (threshold ${evaluation.threshold}, target ≤ ${evaluation.target_fa_per_hour} FA/h)`),
        el("table", {}, el("thead", {}, el("tr", {}, ...["Eval set", "FRR", "FA/h", "FRR at ≤ 0.5 FA/h", "FRR at ≤ 1 FA/h"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...Object.entries(evaluation.sets).map(([name, s]) => el("tr", {}, el("td", {}, name), el("td", {}, pct(s.frr)),
            el("td", {}, s.fa_per_hour?.toFixed?.(2) ?? "n/a"), el("td", {}, pct(s["frr_at_0.5_fa_h"])), el("td", {}, pct(s["frr_at_1_fa_h"])))))))
        : el("p", { class: "muted" }, "Not evaluated yet: evaluate it in the Evaluation panel to store its threshold and metrics here."),
      el("h3", {}, `Files in ${data.folder}`),
      el("table", { "data-role": "files", style: "width: auto" }, el("tbody", {}, ...data.files.map((f) => el("tr", {}, el("td", {}, f.name), el("td", {}, fmtBytes(f.size)))))),
      el("details", {}, el("summary", {}, "manifest.json"), el("pre", { class: "log" }, JSON.stringify(m, null, 2))));
  }

  section.addEventListener("panel-shown", async () => {
    try { await loadRuns(); await loadManifest(); } catch (e) { toast(e.message, true); }
  });
  await loadRuns();
  await loadManifest();
  poll(async () => { if (!section.hidden) await job.refresh(); }, POLL_MS);
}
