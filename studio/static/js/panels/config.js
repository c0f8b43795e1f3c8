// Config panel: every training option (the form is generated from trainer/config.py by
// /api/config/schema), checked by the trainer's own checks as you type, saved as configs/NAME.toml.
import { api, el, fmtCount, toast, fileBrowser } from "../api.js";

const VALIDATE_DELAY_MS = 350;
const LABEL_STYLE = "align-items:flex-start";  // inputs keep their own width instead of the column's
const ROLES = [["teacher", "Primary teacher"], ["secondary_teacher", "Secondary teacher"]];
const SECTION_TITLES = {
  teachers: "Distillation teachers",
  performance: "Performance",
  snr_schedule: "SNR schedule",
};
const SECTION_NOTES = {
  performance: "How the run uses this machine: device, mixed precision, torch.compile and gradient checkpointing.",
  snr_schedule: "Noise gets harder over the epochs: from the start range at the first epoch to the end range at the last.",
};

// A number typed into a text box: a number when it parses, else the text itself, so the
// server's type check names what is wrong ("expected float, got str 'fast'").
function parseNumber(text) {
  const t = text.trim();
  return t !== "" && Number.isFinite(Number(t)) ? Number(t) : t;
}

// One form field: {element, inputs, get(), set(value), problem}.
function makeField(spec, onChange) {
  const inputs = [];
  const input = (attrs) => {
    const node = el("input", { type: "text", ...attrs, oninput: onChange, onchange: onChange });
    inputs.push(node);
    return node;
  };
  let control, get, set;
  if (spec.type === "bool") {
    const box = input({ type: "checkbox", "aria-label": spec.key });
    control = el("label", { class: "inline" }, box, el("code", {}, spec.name));
    get = () => box.checked;
    set = (v) => { box.checked = Boolean(v); };
  } else if (spec.choices && !spec.type.endsWith("_list")) {
    const select = el("select", { "aria-label": spec.key, onchange: onChange });
    inputs.push(select);
    const options = (extra) => {
      const values = [...(spec.optional ? [""] : []), ...spec.choices];
      if (extra !== undefined && !values.includes(extra)) values.push(extra);
      select.replaceChildren(...values.map((v) => el("option", { value: v }, v === "" ? "(none)" : v)));
    };
    options();
    control = el("label", { style: LABEL_STYLE }, el("code", {}, spec.name), select);
    get = () => select.value;
    set = (v) => { options(v); select.value = v; };
  } else if (spec.type === "pair") {
    const lo = input({ "aria-label": `${spec.key} low`, inputmode: "decimal", size: 7 });
    const hi = input({ "aria-label": `${spec.key} high`, inputmode: "decimal", size: 7 });
    control = el("label", { style: LABEL_STYLE }, el("code", {}, spec.name),
      el("span", { class: "row", style: "margin:0;align-items:center" }, lo, "to", hi));
    get = () => [parseNumber(lo.value), parseNumber(hi.value)];
    set = (v) => { lo.value = String(v[0]); hi.value = String(v[1]); };
  } else if (spec.type.endsWith("_list")) {
    const box = input({ "aria-label": spec.key, size: 40, style: "width:100%;box-sizing:border-box" });
    const numeric = spec.type !== "str_list";
    control = el("label", { style: LABEL_STYLE }, el("code", {}, spec.name), box);
    get = () => box.value.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => numeric ? parseNumber(s) : s);
    set = (v) => { box.value = (v || []).join(", "); };
  } else {
    const numeric = spec.type === "int" || spec.type === "float";
    const wide = spec.key.endsWith("_model_path");
    const box = input({ "aria-label": spec.key, inputmode: numeric ? "decimal" : null, size: numeric ? 10 : 30,
      style: wide ? "width:100%;box-sizing:border-box" : null });
    control = el("label", { style: LABEL_STYLE }, el("code", {}, spec.name), box);
    get = () => numeric ? parseNumber(box.value) : box.value;
    set = (v) => { box.value = v === null || v === undefined ? "" : String(v); };
  }
  const hints = [spec.help, spec.type.endsWith("_list") && spec.choices ? `available: ${spec.choices.join(", ")}` : null]
    .filter(Boolean).join(" ");
  const problem = el("div", { class: "problem", role: "alert", "data-problem-for": spec.key });
  const element = el("div", { class: "field", "data-key": spec.key, style: "margin-bottom:.6rem" },
    control, hints ? el("div", { class: "muted", style: "max-width:48rem" }, hints) : null, problem);
  return { spec, element, inputs, get, set, problem };
}

export async function init(section) {
  const schema = await api("/api/config/schema");
  const fields = new Map();
  let timer = null, sequence = 0;
  const scheduleValidation = () => { clearTimeout(timer); timer = setTimeout(validateNow, VALIDATE_DELAY_MS); };
  for (const group of schema.groups) for (const spec of group.fields) fields.set(spec.key, makeField(spec, scheduleValidation));

  // -- file card: load, defaults, save --------------------------------------------------------
  const saved = el("select", { "aria-label": "Saved configs" });
  const nameBox = el("input", { type: "text", "aria-label": "Config name", placeholder: "e.g. dual_teachers", size: 24 });
  const status = el("div", { "data-role": "config-status", class: "muted" });
  const general = el("div", { class: "problem", role: "alert", "data-problem-for": "" });
  const fileCard = el("div", { class: "card" }, el("h2", {}, "Config file"),
    el("div", { class: "row" },
      el("label", {}, "Saved configs (workspace configs/)", saved),
      el("button", { class: "secondary", onclick: () => load(saved.value) }, "Load"),
      el("button", { class: "secondary", onclick: () => { fill(schema.defaults); nameBox.value = ""; validateNow(); } }, "Reset to defaults"),
      el("label", {}, "Config name", nameBox),
      el("button", { class: "primary", onclick: save }, "Save")),
    el("div", { class: "muted" }, "Saved as configs/NAME.toml. Unknown keys and wrong types cannot be saved (`hark train` " +
      "could not load the file). Other problems, such as a teacher checkpoint that does not exist yet, are saved with a " +
      "warning; the Training panel will not start a run until they are fixed."),
    status, general);

  // -- featured sections --------------------------------------------------------------------
  const placed = new Set();
  const take = (key) => { placed.add(key); return fields.get(key).element; };
  const teacherColumn = (role, title) => {
    const pathField = fields.get(`distill.${role}_model_path`);
    const pathBox = pathField.inputs[0];
    const fromRun = el("select", { "aria-label": `${title} from a workspace run`, "data-role": `${role}-runs` });
    // The picker shows the run whose checkpoint the path names (blank for any other path).
    const syncPicker = () => {
      const match = [...fromRun.options].find((o) => o.value && o.value === pathBox.value.trim());
      fromRun.value = match ? match.value : "";
    };
    pathBox.addEventListener("input", syncPicker);
    fromRun.addEventListener("change", () => {
      const option = fromRun.selectedOptions[0];
      if (!option || !option.value) return;
      pathBox.value = option.value;
      const arch = fields.get(`distill.${role}_architecture`);
      if (option.dataset.architecture && !arch.get()) arch.set(option.dataset.architecture);
      scheduleValidation();
    });
    const browserBox = el("div", { hidden: true, "data-role": `${role}-browser` });
    const browser = fileBrowser({ filter: (e) => e.name.endsWith(".pt"), onPick: async (path, isDir) => {
      if (isDir) return;
      try {
        pathBox.value = (await api(`/api/config/realpath?path=${encodeURIComponent(path)}`)).path;
        syncPicker();
        browserBox.hidden = true;
        scheduleValidation();
      } catch (e) { toast(e.message, true); }
    } });
    browserBox.append(el("div", { class: "muted" }, "Double-click a folder to open it; click a .pt file to use it."), browser.element);
    const browse = el("button", { class: "secondary", onclick: async () => {
      browserBox.hidden = !browserBox.hidden;
      if (!browserBox.hidden) await browser.open("workspace/runs").catch(() => browser.open("workspace"));
    } }, `Browse for the ${title.toLowerCase()} checkpoint…`);
    return { fromRun, syncPicker, element: el("div", { class: "card", style: "flex:1;min-width:26rem;margin:0", "data-role": `${role}-column` },
      el("h3", {}, title), take(`distill.${role}_architecture`), take(`distill.${role}_model_path`),
      el("div", { class: "row" }, browse, el("label", {}, "or pick a workspace run", fromRun)), browserBox) };
  };
  const columns = ROLES.map(([role, title]) => teacherColumn(role, title));
  const teacherCard = el("div", { class: "card", "data-section": "teachers" }, el("h2", {}, SECTION_TITLES.teachers),
    take("distill.mode"),
    el("div", { class: "row", style: "align-items:stretch" }, columns.map((c) => c.element)),
    el("div", { class: "muted" }, "Paths are stored as absolute paths. A teacher must be a hark run's checkpoint of the " +
      "named architecture, trained with the student's feature settings; the other distillation settings are in the " +
      "Distillation group below."));
  const featured = ["performance", "snr_schedule"].map((name) => el("div", { class: "card", "data-section": name, style: "flex:1;min-width:26rem" },
    el("h2", {}, SECTION_TITLES[name]), el("div", { class: "muted", style: "margin-bottom:.5rem" }, SECTION_NOTES[name]),
    schema.sections[name].map(take)));

  // -- the groups: every other field ------------------------------------------------------------
  const groupBoxes = schema.groups.map((group) => {
    const rest = group.fields.filter((f) => !placed.has(f.key));
    const count = el("span", { class: "problem", "data-role": "group-problems" });
    const box = el("details", { class: "card", "data-group": group.id },
      el("summary", { style: "cursor:pointer;font-weight:600" }, `${group.title} `, el("span", { class: "muted" }, `(${rest.length} options)`), " ", count),
      group.help ? el("p", { class: "muted" }, group.help) : null,
      el("div", { style: "display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:0 1.2rem" },
        rest.map((f) => fields.get(f.key).element)));
    return { group, box, count, keys: new Set(group.fields.map((f) => f.key)) };
  });

  section.append(fileCard, teacherCard, el("div", { class: "row", style: "align-items:stretch" }, featured),
    el("h2", { style: "font-size:1rem" }, "All options"), ...groupBoxes.map((g) => g.box));

  // -- behaviour ------------------------------------------------------------------------------
  function collect() {
    const config = {};
    for (const [key, field] of fields) {
      const parts = key.split(".");
      let node = config;
      for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
      node[parts[parts.length - 1]] = field.get();
    }
    return config;
  }
  function fill(config) {
    for (const [key, field] of fields) {
      const value = key.split(".").reduce((node, part) => (node === undefined || node === null ? undefined : node[part]), config);
      if (value !== undefined) field.set(value);
    }
    for (const { syncPicker } of columns) syncPicker();
  }
  function show(report) {
    for (const field of fields.values()) {
      field.problem.replaceChildren();
      for (const node of field.inputs) { node.classList.remove("invalid"); node.removeAttribute("aria-invalid"); }
    }
    general.replaceChildren();
    for (const p of report.problems) {
      const field = p.field && fields.get(p.field);
      if (field) {
        field.problem.append(el("div", {}, p.message));
        for (const node of field.inputs) { node.classList.add("invalid"); node.setAttribute("aria-invalid", "true"); }
      } else general.append(el("div", {}, p.key ? `${p.key}: ${p.message}` : p.message));
    }
    for (const g of groupBoxes) {
      const n = report.problems.filter((p) => p.field && g.keys.has(p.field) && !placed.has(p.field)).length;
      g.count.textContent = n ? `${n} problem(s)` : "";
      if (n) g.box.open = true;
    }
    const teachers = report.teachers.map((t) => `${t.role.replace("_", " ")}: ${t.architecture}, ${fmtCount(t.parameters)} parameters`);
    status.className = report.ok ? "ok" : "bad";
    status.textContent = report.ok
      ? `No problems: ready to train${teachers.length ? `; distillation from ${teachers.join(" and ")}` : ""}.`
      : `${report.problems.length} problem(s)${report.savable ? "" : "; unknown keys or wrong types: cannot be saved"}.`;
  }
  async function validateNow() {
    clearTimeout(timer);
    const mine = ++sequence;
    try {
      const report = await api("/api/config/validate", { body: { config: collect() } });
      if (mine === sequence) show(report);
    } catch (e) { toast(e.message, true); }
  }
  async function refreshLists() {
    const [{ configs }, { runs }] = await Promise.all([api("/api/config/list"), api("/api/config/teachers")]);
    const current = saved.value;
    saved.replaceChildren(...(configs.length ? configs.map((c) => el("option", { value: c.name }, c.file))
      : [el("option", { value: "" }, "(none saved yet)")]));
    if (configs.some((c) => c.name === current)) saved.value = current;
    for (const { fromRun, syncPicker } of columns) {
      fromRun.replaceChildren(el("option", { value: "" }, runs.length ? "(choose a run)" : "(no trained runs yet)"),
        ...runs.map((r) => el("option", { value: r.path, dataset: { architecture: r.architecture || "" } },
          `${r.run}${r.architecture ? ` (${r.architecture})` : ""}`)));
      syncPicker();
    }
  }
  async function load(name) {
    if (!name) { toast("no saved config to load", true); return; }
    try {
      const data = await api(`/api/config/load?name=${encodeURIComponent(name)}`);
      fill(data.config);
      nameBox.value = data.name;
      show(data);
      toast(`loaded configs/${data.file}`);
    } catch (e) { toast(e.message, true); }
  }
  async function save() {
    try {
      const data = await api("/api/config/save", { body: { name: nameBox.value, config: collect() } });
      show(data);
      fill((await api(`/api/config/load?name=${encodeURIComponent(data.name)}`)).config);
      await refreshLists();
      saved.value = data.name;
      toast(data.ok ? `saved configs/${data.file}` : `saved configs/${data.file} with ${data.problems.length} problem(s): fix them before training`, !data.ok);
    } catch (e) { toast(e.message, true); validateNow(); }
  }

  fill(schema.defaults);
  await refreshLists();
  await validateNow();
  section.addEventListener("panel-shown", () => refreshLists().catch((e) => toast(e.message, true)));
}
