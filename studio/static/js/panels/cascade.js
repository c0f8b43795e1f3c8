// Cascade Testing panel: is the judge server healthy, and does it agree with the sentry on a clip?
// The API key is kept in this tab's sessionStorage and sent with each check; the studio never stores it.
import { api, el, fmtCount, fmtBytes, toast } from "../api.js";
import { lineChart } from "../chart.js";
import { recordWav } from "../recorder.js";

const URL_KEY = "hark.cascade.url";
const KEY_KEY = "hark.cascade.key";
const DEFAULT_URL = "http://127.0.0.1:8080";
const DEFAULT_RECORD_S = 3;
const STATUS_TEXT = { ok: "healthy", unreachable: "unreachable", not_a_judge: "not a judge", not_ready: "up but not ready",
  unauthorized: "unauthorized (wrong or missing key)", error: "error" };

export async function init(section) {
  const url = el("input", { name: "judge-url", type: "url", size: 36, value: localStorage.getItem(URL_KEY) || DEFAULT_URL });
  const key = el("input", { name: "judge-key", type: "password", size: 36, autocomplete: "off",
    value: sessionStorage.getItem(KEY_KEY) || "" });
  const urlError = el("span", { class: "error", "data-error": "url" });
  const health = el("div", { "data-role": "health" });
  const checkButton = el("button", { class: "primary", onclick: checkHealth }, "Check health");

  function judgeFields() {
    localStorage.setItem(URL_KEY, url.value.trim());
    sessionStorage.setItem(KEY_KEY, key.value);
    return { url: url.value.trim(), key: key.value };
  }

  function showUrlError(e) {
    const bad = e.code === "bad_url" || e.code === "bad_key";
    urlError.textContent = bad ? e.message : "";
    url.classList.toggle("invalid", e.code === "bad_url");
    key.classList.toggle("invalid", e.code === "bad_key");
    return bad;
  }

  async function checkHealth() {
    checkButton.disabled = true;
    health.replaceChildren(el("p", { class: "muted" }, "checking..."));
    showUrlError({});
    try {
      const r = await api("/api/cascade/health", { body: judgeFields() });
      const m = r.model;
      // A healthy judge's message names its model: the model line says it once, in full.
      health.replaceChildren(
        el("p", {}, el("strong", { class: r.ok ? "ok" : "bad", "data-role": "health-status", "data-status": r.status },
          STATUS_TEXT[r.status] || r.status), " ",
          m ? el("span", { "data-role": "judge-model" }, `model ${m.name} ${m.version} (${m.architecture}, `
            + `${fmtCount(m.parameters)} parameters) for "${m.wake_word}", threshold ${m.threshold}`)
            : el("span", { "data-role": "health-message" }, r.message)),
        el("table", {}, el("thead", {}, el("tr", {}, ...["Probe", "HTTP", "Time"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...r.checks.map((c) => el("tr", {}, el("td", {}, "GET " + c.path),
            el("td", {}, c.http === null ? c.error : String(c.http)), el("td", {}, c.ms === null ? "-" : `${c.ms} ms`))))));
    } catch (e) {
      if (!showUrlError(e)) toast(e.message, true);
      health.replaceChildren();
    } finally { checkButton.disabled = false; }
  }

  // ---------------------------------------------------------------- Verify with Judge
  const run = el("select", { name: "sentry-run" });
  const file = el("input", { name: "audio", type: "file", accept: ".wav,audio/wav", onchange: () => {
    if (file.files.length) setClip(file.files[0], file.files[0].name);
  } });
  const seconds = el("input", { name: "record-seconds", type: "number", min: 1, max: 10, step: 0.5, value: DEFAULT_RECORD_S, size: 4 });
  const recordButton = el("button", { class: "secondary", onclick: record }, "Record from microphone");
  const level = el("progress", { max: 1, value: 0, hidden: true });
  const clipInfo = el("p", { class: "muted", "data-role": "clip" }, "no clip yet: upload a WAV file or record one");
  const player = el("audio", { controls: true, hidden: true });
  const verifyButton = el("button", { class: "primary", disabled: true, onclick: verify }, "Verify with Judge");
  const verifyError = el("p", { class: "error", "data-role": "verify-error" });
  const result = el("div", { "data-role": "verify-result" });
  let clip = null;

  function setClip(blob, name) {
    clip = { blob, name };
    clipInfo.textContent = `clip: ${name} (${fmtBytes(blob.size)})`;
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(blob);
    player.hidden = false;
    verifyButton.disabled = false;
  }

  async function record() {
    recordButton.disabled = true;
    level.hidden = false;
    try {
      const blob = await recordWav(Number(seconds.value), { onProgress: (_t, peak) => { level.value = peak; } });
      setClip(blob, `microphone take, ${Number(seconds.value)} s`);
      file.value = "";
    } catch (e) { toast(e.message, true); }
    finally { recordButton.disabled = false; level.hidden = true; }
  }

  async function verify() {
    verifyError.textContent = "";
    showUrlError({});
    const fields = judgeFields();
    const form = new FormData();
    form.append("audio", clip.blob, clip.name.endsWith(".wav") ? clip.name : "microphone.wav");
    form.append("url", fields.url);
    form.append("key", fields.key);
    form.append("run", run.value);
    verifyButton.disabled = true;
    result.replaceChildren(el("p", { class: "muted" }, "scoring and asking the judge..."));
    try {
      showResult(await api("/api/cascade/verify", { form }));
    } catch (e) {
      if (!showUrlError(e)) verifyError.textContent = e.message;
      result.replaceChildren();
    } finally { verifyButton.disabled = false; }
  }

  function showResult(r) {
    const s = r.sentry, j = r.judge;
    const judged = j.source === "judge";
    const verdict = judged ? (j.verified ? "verified" : "rejected") : "no verdict";
    const line = (label, value, role) => el("tr", {}, el("th", {}, label), el("td", { "data-field": role }, value));
    result.replaceChildren(
      el("div", { class: "row", style: "align-items:start" },
        el("table", { "data-role": "sentry-result", style: "width:auto" }, el("caption", {}, `Sentry (${run.value})`),
          line("Peak score (smoothed)", s.score.toFixed(3), "sentry-score"),
          line("Threshold", String(s.threshold), "sentry-threshold"),
          line("Fires", s.fired ? `yes, at ${s.detections.join(", ")} s` : "no (the device would not ask the judge)", "sentry-fired"),
          line("Peak at", `${s.peak_s.toFixed(2)} s of ${s.seconds.toFixed(2)} s`, "sentry-peak"),
          line("Clip sent", `${r.clip.start_s.toFixed(2)}–${r.clip.end_s.toFixed(2)} s (${r.clip.seconds.toFixed(2)} s)`, "clip-span")),
        el("table", { "data-role": "judge-result", style: "width:auto" }, el("caption", {}, `Judge (${r.url})`),
          line("Verdict", el("strong", { class: judged ? (j.verified ? "ok" : "bad") : "bad" }, verdict), "judge-verdict"),
          line("Score (best window)", judged ? j.score.toFixed(3) : "-", "judge-score"),
          line("Threshold", judged && j.threshold !== null ? String(j.threshold) : "-", "judge-threshold"),
          line("Model version", j.model_version || "-", "judge-version"),
          line("Latency", `${j.latency_ms.toFixed(1)} ms (${j.attempts} attempt${j.attempts === 1 ? "" : "s"})`, "judge-latency"),
          j.error ? line("Error", el("span", { class: "error" }, j.error), "judge-error") : null)),
      el("p", { class: "muted", "data-role": "score-note" }, "The two scores are not the same measure: the sentry's is ",
        "its smoothed score at its peak (what it compares with its threshold); the judge's is the raw probability of the ",
        "best-aligned 1.5 s window in the clip it was sent."),
      lineChart({ series: [{ name: "sentry score", points: s.scores }], xLabel: "seconds", yLabel: "smoothed score",
        yMin: 0, yMax: 1, markers: [{ x: s.peak_s, label: "peak: clip sent" }] }));
  }

  async function loadRuns() {
    try {
      const { runs } = await api("/api/runs");
      const keep = run.value;
      const exported = runs.filter((r) => r.exported);
      run.replaceChildren(...exported.map((r) => el("option", { value: r.name }, r.wake_word ? `${r.name} (${r.wake_word})` : r.name)));
      if (!exported.length) run.append(el("option", { value: "" }, "no exported run yet"));
      if (exported.some((r) => r.name === keep)) run.value = keep;
    } catch (e) { verifyError.textContent = e.message; }
  }

  section.replaceChildren(
    el("div", { class: "card" }, el("h2", {}, "Judge server"),
      el("p", { class: "muted" }, "The second stage of the cascade (`hark-judge serve`). The key is only sent with each check, never saved by the studio."),
      el("div", { class: "row" }, el("label", {}, "Judge URL", url), el("label", {}, "API key", key), checkButton),
      urlError, health),
    el("div", { class: "card" }, el("h2", {}, "Verify with Judge"),
      el("p", { class: "muted" }, "The sentry scores the clip; the judge gets what a device would send around the sentry's peak (the 1.5 s window, 0.5 s before it, 0.24 s after)."),
      el("div", { class: "row" }, el("label", {}, "Sentry model (exported run)", run),
        el("label", {}, "WAV file", file),
        el("label", {}, "Seconds to record", seconds), recordButton, level),
      clipInfo, player,
      el("div", { class: "row" }, verifyButton), verifyError, result));
  section.addEventListener("panel-shown", loadRuns);
  await loadRuns();
}
