// The studio shell: tab switching (remembered in the URL hash) and loading each panel.
import { api } from "./api.js";

const PANELS = ["data", "config", "train", "evaluate", "mining", "cascade", "export"];
const loaded = new Map();

async function show(name) {
  if (!PANELS.includes(name)) name = PANELS[0];
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.panel === name));
  }
  for (const panel of PANELS) document.getElementById(`panel-${panel}`).hidden = panel !== name;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  const section = document.getElementById(`panel-${name}`);
  if (!loaded.has(name)) {
    loaded.set(name, true);
    try {
      const module = await import(`./panels/${name}.js`);
      await module.init(section);
    } catch (e) {
      section.replaceChildren();
      const box = document.createElement("div");
      box.className = "card error";
      box.textContent = `this panel failed to load: ${e.message}`;
      section.append(box);
    }
  }
  section.dispatchEvent(new CustomEvent("panel-shown"));
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.panel)));
window.addEventListener("hashchange", () => show(location.hash.slice(1)));
// The path's end names the workspace: a long path loses its start to the ellipsis (style.css).
api("/api/state").then((s) => {
  const path = document.createElement("span");
  path.className = "path";
  path.title = s.workspace;
  path.append(Object.assign(document.createElement("bdi"), { textContent: s.workspace }));
  document.getElementById("workspace").replaceChildren("workspace:\u00a0", path);
}).catch((e) => { document.getElementById("workspace").textContent = e.message; });
show(location.hash.slice(1));
