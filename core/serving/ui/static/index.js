// GET /: every model in models.config with its versions' states; refreshed while the page is open.
"use strict";

const REFRESH_MS = 5000;
const signatureLines = new Map();  // "name/version" -> "inputs -> outputs" of serving_default

async function describe(name, version) {
  const key = `${name}/${version}`;
  if (!signatureLines.has(key)) {
    const answer = await UI.request(UI.modelUrl(name, version) + "/metadata");
    if (!answer.ok) return "";
    const defs = answer.body.metadata.signature_def.signature_def;
    const sig = defs.serving_default;
    const others = Object.keys(defs).filter((k) => k !== "serving_default" && !k.startsWith("__")).length;
    const line = sig ? `${Object.keys(sig.inputs).sort().join(", ")} \u2192 ${Object.keys(sig.outputs).sort().join(", ")}` : "";
    signatureLines.set(key, line + (others ? `  (+${others} more)` : ""));
  }
  return signatureLines.get(key);
}

async function refresh() {
  const answer = await UI.request("/ui/models");
  if (!answer.ok) {
    UI.showError(answer.body.error || `status ${answer.status}`);
    return;
  }
  UI.showError("");
  const models = answer.body.models;
  const table = document.getElementById("models");
  const rows = await Promise.all(models.map(async (model) => {
    const versions = model.model_version_status || [];
    const available = versions.filter((v) => v.state === "AVAILABLE").map((v) => Number(v.version));
    const latest = available.length ? String(Math.max(...available)) : null;
    const states = UI.el("ul", {class: "versions"}, versions.map((v) => UI.el("li", {},
      `version ${v.version} `,
      UI.el("span", {class: `state ${UI.stateClass(v.state)}`, text: v.state}),
      v.status && v.status.error_message ? UI.el("span", {class: "error-text", text: ` ${v.status.error_message}`}) : null)));
    if (model.error) states.append(UI.el("li", {class: "error-text", text: model.error}));
    return UI.el("tr", {dataset: {model: model.name}},
      UI.el("td", {}, UI.el("a", {href: UI.pageUrl(model.name), class: "model-link", text: model.name})),
      UI.el("td", {}, states),
      UI.el("td", {class: "signature"}, latest ? await describe(model.name, latest) : ""));
  }));
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = models.length === 0;
  document.getElementById("empty").hidden = models.length !== 0;
  document.body.dataset.loaded = "true";
}

refresh();
setInterval(refresh, REFRESH_MS);
