// /models/NAME: a form built from the model's signature metadata, sent to the model's :predict API,
// and its answer rendered by type. Nothing here knows about any app: only dtypes, shapes, defaults
// and the naming conventions of the exports (`*_bytes` for encoded bytes, label/score pairs, boxes).
"use strict";

const NAME = decodeURIComponent(location.pathname.replace(/^\/models\//, "").replace(/\/+$/, ""));
const FLOATS = new Set(["DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"]);
const INTS = new Set(["DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16", "DT_UINT32", "DT_UINT64"]);
const TOP_BARS = 10;
const BOX_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324"];
const $ = (id) => document.getElementById(id);

const state = {
  version: "",  // "" = the latest available, as a client that names no version gets
  defs: {},  // signature name -> SignatureDef (JSON)
  signature: "",
  files: {},  // input key -> {bytes, name, type}: kept across signatures, so one photo serves them all
  urls: [],  // object URLs of the last answer, revoked on the next
  runs: 0,
};

// ---------------------------------------------------------------------------------------------
// Signature metadata.

function dimsOf(info) {
  const shape = info.tensor_shape;
  if (!shape || shape.unknown_rank) return null;
  return (shape.dim || []).map((d) => Number(d.size));
}

function dtypeName(dtype) {
  return (dtype || "").replace(/^DT_/, "").toLowerCase().replace(/^float$/, "float32").replace(/^double$/, "float64")
    .replace(/^half$/, "float16");
}

function shapeText(dims) {
  return dims === null ? "[any shape]" : `[${dims.map((d) => (d < 0 ? "?" : d)).join(",")}]`;
}

// How a person gives an input: file, text, number, bool, pixels (an image file sent as pixel values)
// or json (anything else, as a JSON tensor).
function inputKind(key, info) {
  const dims = dimsOf(info);
  const rank = dims === null ? -1 : dims.length;
  const single = rank === 0 || (rank === 1 && (dims[0] === -1 || dims[0] === 1));
  const numeric = FLOATS.has(info.dtype) || INTS.has(info.dtype);
  if (info.dtype === "DT_STRING" && single) return key.endsWith("_bytes") ? "file" : "text";
  if (info.dtype === "DT_BOOL" && single) return "bool";
  if (numeric && single) return "number";
  if (numeric && rank === 4 && (dims[3] === 3 || dims[3] === 1)) return "pixels";
  return "json";
}

const isAudio = (key) => /wav|audio|speech|sound/i.test(key);

// A SignatureDef default (a TensorProto in JSON), as one JS value; undefined when there is none.
function defaultOf(sig, key) {
  const proto = (sig.defaults || {})[key];
  if (!proto) return undefined;
  for (const field of ["float_val", "double_val", "int_val", "int64_val", "uint32_val", "uint64_val"]) {
    if (proto[field] && proto[field].length) return Number(proto[field][0]);
  }
  if (proto.bool_val && proto.bool_val.length) return Boolean(proto.bool_val[0]);
  if (proto.string_val && proto.string_val.length) {
    return new TextDecoder().decode(UI.base64ToBytes(proto.string_val[0]));
  }
  if (proto.tensor_content) {
    const bytes = UI.base64ToBytes(proto.tensor_content);
    const view = new DataView(bytes.buffer);
    const read = {
      DT_FLOAT: () => view.getFloat32(0, true), DT_DOUBLE: () => view.getFloat64(0, true),
      DT_INT32: () => view.getInt32(0, true), DT_INT64: () => Number(view.getBigInt64(0, true)),
      DT_INT16: () => view.getInt16(0, true), DT_INT8: () => view.getInt8(0), DT_UINT8: () => view.getUint8(0),
      DT_BOOL: () => view.getUint8(0) !== 0,
    }[proto.dtype];
    if (read && bytes.length) return read();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The form.

function describeSignature(sig) {
  const names = (o) => Object.keys(o || {}).sort().join(", ") || "nothing";
  return `${names(sig.inputs)} \u2192 ${names(sig.outputs)}`;
}

function buildForm() {
  const sig = state.defs[state.signature];
  $("signature-doc").textContent = describeSignature(sig);
  const order = {file: 0, pixels: 0, text: 1, number: 2, bool: 2, json: 3};
  const keys = Object.keys(sig.inputs).sort((a, b) =>
    order[inputKind(a, sig.inputs[a])] - order[inputKind(b, sig.inputs[b])] || a.localeCompare(b));
  const rows = keys.map((key) => buildInput(sig, key));
  $("inputs").replaceChildren(...rows);
  if (!keys.length) $("inputs").append(UI.el("p", {class: "hint", text: "This signature takes no inputs."}));
  for (const key of keys) if (state.files[key]) showPreview(key);
}

function buildInput(sig, key) {
  const info = sig.inputs[key];
  const kind = inputKind(key, info);
  const dims = dimsOf(info);
  const fallback = defaultOf(sig, key);
  const id = `input-${key}`;
  const type = `${dtypeName(info.dtype)} ${shapeText(dims)}` + (fallback !== undefined ? ` \u00b7 default ${fallback}` : "");
  const label = UI.el("label", {for: id}, UI.el("span", {class: "name", text: key}), UI.el("span", {class: "type", text: type}));
  const row = UI.el("div", {class: `field field-${kind}`, dataset: {input: key, kind}}, label);
  if (kind === "file" || kind === "pixels") {
    const audio = kind === "file" && isAudio(key);
    const accept = kind === "pixels" || /image|photo|picture|img/i.test(key) ? "image/*" : audio ? "audio/wav,.wav" : null;
    const picker = UI.el("input", {type: "file", id, accept});
    picker.addEventListener("change", async () => {
      const file = picker.files[0];
      if (!file) return;
      state.files[key] = {bytes: new Uint8Array(await file.arrayBuffer()), name: file.name, type: file.type};
      showPreview(key);
    });
    const controls = UI.el("div", {class: "controls"}, picker);
    if (audio) controls.append(recordButton(key), UI.el("span", {class: "hint", text: "records 16 kHz mono WAV"}));
    if (kind === "pixels") {
      controls.append(UI.el("span", {class: "hint", text: "an image file, sent as pixel values 0\u2013255"}));
    }
    row.append(controls, UI.el("div", {class: "preview", id: `preview-${key}`}));
  } else if (kind === "text") {
    row.append(UI.el("textarea", {id, rows: 3, placeholder: "text", text: fallback !== undefined ? fallback : ""}));
  } else if (kind === "number") {
    row.append(UI.el("input", {
      type: "number", id, step: INTS.has(info.dtype) ? "1" : "any",
      value: fallback !== undefined ? String(fallback) : null,
      placeholder: fallback !== undefined ? null : "no default: required"}));
  } else if (kind === "bool") {
    row.append(UI.el("input", {type: "checkbox", id, checked: fallback === true}));
  } else {
    row.append(UI.el("textarea", {id, rows: 3, class: "json",
      placeholder: `JSON: the whole tensor, ${dtypeName(info.dtype)} ${shapeText(dims)}`}));
  }
  return row;
}

function recordButton(key) {
  let recorder = null;
  let timer = null;
  const button = UI.el("button", {type: "button", class: "record", text: "\u25cf Record"});
  button.addEventListener("click", async () => {
    if (!recorder) {
      recorder = new WavRecorder();
      try {
        await recorder.start();
      } catch (err) {
        recorder = null;
        UI.showError(err.message, "Microphone:");
        return;
      }
      button.textContent = "\u25a0 Stop";
      button.classList.add("recording");
      timer = setTimeout(() => button.click(), MAX_RECORD_SECONDS * 1000);
      return;
    }
    clearTimeout(timer);
    const active = recorder;
    recorder = null;
    button.textContent = "\u25cf Record";
    button.classList.remove("recording");
    try {
      state.files[key] = {bytes: await active.stop(), name: "recording.wav", type: "audio/wav"};
      showPreview(key);
    } catch (err) {
      UI.showError(err.message, "Microphone:");
    }
  });
  return button;
}

function showPreview(key) {
  const box = $(`preview-${key}`);
  const file = state.files[key];
  if (!box || !file) return;
  const type = UI.sniff(file.bytes) || file.type;
  const url = URL.createObjectURL(new Blob([file.bytes], {type}));
  const caption = UI.el("span", {class: "hint", text: `${file.name} \u00b7 ${formatSize(file.bytes.length)}`});
  if (type.startsWith("image/")) {
    const img = UI.el("img", {src: url, alt: `the ${key} input`, class: "preview-image"});
    img.addEventListener("error", () => img.replaceWith(UI.el("span", {class: "hint", text: "(the browser cannot show this file as an image)"})));
    box.replaceChildren(img, caption);
  } else if (type.startsWith("audio/")) {
    box.replaceChildren(UI.el("audio", {src: url, controls: true, class: "preview-audio"}), caption);
  } else {
    box.replaceChildren(caption);
  }
}

function formatSize(n) {
  return n < 1024 ? `${n} bytes` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} kB` : `${(n / (1 << 20)).toFixed(1)} MB`;
}

// An image file as a [1, H, W, C] tensor of pixel values 0..255.
async function pixelTensor(bytes, channels) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]));
  } catch (err) {
    throw new Error("the browser could not decode this file as an image");
  }
  const canvas = UI.el("canvas", {width: bitmap.width, height: bitmap.height});
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const rows = [];
  for (let y = 0; y < bitmap.height; y++) {
    const row = [];
    for (let x = 0; x < bitmap.width; x++) {
      const i = 4 * (y * bitmap.width + x);
      row.push(channels === 1 ? [Math.round(0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2])]
        : [data[i], data[i + 1], data[i + 2]]);
    }
    rows.push(row);
  }
  return [rows];
}

// The request's "inputs" (columnar format: the only one that carries inputs without a batch dimension).
// Empty fields are left out, so the API itself says what is missing.
async function collectInputs(sig) {
  const inputs = {};
  for (const key of Object.keys(sig.inputs)) {
    const info = sig.inputs[key];
    const kind = inputKind(key, info);
    const dims = dimsOf(info);
    const one = (value) => (dims && dims.length === 1 ? [value] : value);
    const field = $(`input-${key}`);
    if (kind === "file") {
      if (state.files[key]) inputs[key] = one({b64: UI.bytesToBase64(state.files[key].bytes)});
    } else if (kind === "pixels") {
      if (state.files[key]) {
        try {
          inputs[key] = await pixelTensor(state.files[key].bytes, dims[3]);
        } catch (err) {
          throw new Error(`${key}: ${err.message}`);
        }
      }
    } else if (kind === "text") {
      inputs[key] = one(field.value);
    } else if (kind === "number") {
      if (field.validity.badInput) throw new Error(`${key}: not a number`);
      if (field.value.trim() !== "") inputs[key] = one(Number(field.value));
    } else if (kind === "bool") {
      inputs[key] = one(field.checked);
    } else if (field.value.trim() !== "") {
      try {
        inputs[key] = JSON.parse(field.value);
      } catch (err) {
        throw new Error(`${key}: not valid JSON (${err.message})`);
      }
    }
  }
  return inputs;
}

// For showing a request or answer: long base64 strings and big tensors shortened.
function shorten(value) {
  return JSON.stringify(value, (key, v) => {
    if (typeof v === "string" && v.length > 120) return `${v.slice(0, 60)}\u2026 (${v.length} characters)`;
    if (Array.isArray(v) && v.length > 64) return [...v.slice(0, 8), `\u2026 ${v.length - 8} more`];
    return v;
  }, 1);
}

async function run(event) {
  event.preventDefault();
  const sig = state.defs[state.signature];
  document.body.dataset.state = "running";
  UI.showError("");
  $("run").disabled = true;
  $("busy").hidden = false;
  try {
    let inputs;
    try {
      inputs = await collectInputs(sig);
    } catch (err) {
      UI.showError(err.message, "Not sent:");
      document.body.dataset.state = "error";
      return;
    }
    const body = {signature_name: state.signature, inputs};
    const url = UI.modelUrl(NAME, state.version) + ":predict";
    $("request-url").textContent = url;
    $("request").textContent = shorten(body);
    const answer = await UI.request(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    $("response-status").textContent = `(HTTP ${answer.status})`;
    $("response").textContent = shorten(answer.body);
    $("exchange").hidden = false;
    state.urls.forEach((u) => URL.revokeObjectURL(u));
    state.urls = [];
    if (!answer.ok) {
      $("result").replaceChildren();
      UI.showError(answer.body.error || JSON.stringify(answer.body), `The model answered ${answer.status}:`);
      document.body.dataset.state = "error";
      return;
    }
    $("result").replaceChildren(...await renderOutputs(sig, answer.body.outputs, inputs));
    document.body.dataset.state = "done";
  } finally {
    state.runs += 1;
    document.body.dataset.runs = String(state.runs);
    $("run").disabled = false;
    $("busy").hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------
// The answer.

const depth = (v) => (Array.isArray(v) ? 1 + (v.length ? depth(v[0]) : 0) : 0);
const isFloat = (o) => FLOATS.has(o.dtype);
const isText = (o) => o.dtype === "DT_STRING" && !o.key.endsWith("_bytes");

function section(title, keys, ...children) {
  const names = keys.join(" \u00b7 ");
  return UI.el("section", {class: "output", dataset: {outputs: keys.join(" ")}},
    UI.el("h3", {}, title, names !== title ? UI.el("span", {class: "keys", text: names}) : null), ...children);
}

async function renderOutputs(sig, outputs, sent) {
  const keys = Object.keys(sig.outputs).sort();
  // Columnar answers: {"outputs": tensor} for one output, {"outputs": {key: tensor}} for several.
  const all = keys.length === 1 ? {[keys[0]]: outputs} : outputs;
  const out = {};
  for (const key of keys) {
    const info = sig.outputs[key];
    const dims = dimsOf(info);
    let value = all[key];
    // One example was sent: take it out of the batch.
    if (dims && dims.length && dims[0] === -1 && Array.isArray(value) && value.length === 1) value = value[0];
    out[key] = {key, value, dtype: info.dtype};
  }
  const used = new Set();
  const sections = [...await renderDetections(out, used, sig), ...renderRanked(out, used)];
  for (const key of keys) if (!used.has(key)) sections.push(renderOne(out[key], sig, sent));
  return sections;
}

function inputImage(sig) {
  for (const key of Object.keys(sig.inputs).sort()) {
    const file = state.files[key];
    if (file && (UI.sniff(file.bytes) || file.type).startsWith("image/")) return file.bytes;
  }
  return null;
}

// boxes [D, 4] (y1, x1, y2, x2; normalised or in pixels) with classes and scores [D]: drawn over the photo.
async function renderDetections(out, used, sig) {
  const all = Object.values(out);
  const boxes = all.find((o) => isFloat(o) && /box/i.test(o.key) && depth(o.value) === 2 && o.value.every((b) => b.length === 4));
  if (!boxes) return [];
  const n = boxes.value.length;
  const perBox = all.filter((o) => o !== boxes && depth(o.value) === 1 && o.value.length === n && !o.key.endsWith("_bytes"));
  const scores = perBox.find((o) => isFloat(o) && /score|prob|conf/i.test(o.key)) || perBox.find(isFloat);
  const classes = perBox.find((o) => isText(o) && /class|label|name/i.test(o.key)) || perBox.find(isText);
  const count = all.find((o) => INTS.has(o.dtype) && depth(o.value) === 0 && /num|count/i.test(o.key));
  [boxes, count, ...perBox].forEach((o) => o && used.add(o.key));
  const shown = [];
  for (let i = 0; i < Math.min(n, count ? count.value : n); i++) {
    const padding = scores && scores.value[i] <= 0 && (!classes || classes.value[i] === "");
    if (!count && padding) continue;
    shown.push(i);
  }
  const head = UI.el("tr", {}, UI.el("th", {text: "#"}), perBox.map((o) => UI.el("th", {text: o.key})), UI.el("th", {text: boxes.key}));
  const rows = shown.map((i, j) => UI.el("tr", {class: "detection"},
    UI.el("td", {}, UI.el("span", {class: "swatch", dataset: {colour: BOX_COLOURS[j % BOX_COLOURS.length]}}), String(j + 1)),
    perBox.map((o) => UI.el("td", {text: isFloat(o) ? o.value[i].toFixed(3) : String(o.value[i])})),
    UI.el("td", {class: "box", text: boxes.value[i].map((v) => Number(v).toFixed(3)).join(", ")})));
  const table = UI.el("table", {class: "detections"}, UI.el("thead", {}, head), UI.el("tbody", {}, rows));
  const children = [];
  const photo = inputImage(sig);
  if (photo) {
    children.push(await drawBoxes(photo, shown.map((i) => ({
      box: boxes.value[i], label: [classes ? classes.value[i] : "", scores ? scores.value[i].toFixed(2) : ""].join(" ").trim()}))));
  }
  children.push(shown.length ? table : UI.el("p", {class: "hint", text: "No detections."}));
  const result = section("Detections", [boxes.key, count && count.key, ...perBox.map((o) => o.key)].filter(Boolean), ...children);
  result.querySelectorAll(".swatch").forEach((s) => (s.style.background = s.dataset.colour));
  return [result];
}

async function drawBoxes(bytes, detections) {
  const canvas = UI.el("canvas", {class: "boxes"});
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]));
  } catch (err) {
    return UI.el("p", {class: "hint", text: "(the input photo cannot be shown to draw the boxes on)"});
  }
  const scale = Math.min(720 / bitmap.width, Math.max(1, 480 / bitmap.width));  // small photos drawn larger
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const normalised = detections.every((d) => d.box.every((v) => Math.abs(v) <= 1.5));
  const sx = normalised ? canvas.width : scale;
  const sy = normalised ? canvas.height : scale;
  context.lineWidth = 3;
  context.font = "bold 14px system-ui, sans-serif";
  detections.forEach((d, j) => {
    const [y1, x1, y2, x2] = d.box;
    const colour = BOX_COLOURS[j % BOX_COLOURS.length];
    context.strokeStyle = colour;
    context.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    if (d.label) {
      const width = context.measureText(d.label).width + 8;
      const top = Math.max(0, y1 * sy - 20);
      context.fillStyle = colour;
      context.fillRect(x1 * sx - 1.5, top, width, 20);
      context.fillStyle = "#fff";
      context.fillText(d.label, x1 * sx + 3, top + 15);
    }
  });
  canvas.dataset.boxes = String(detections.length);
  return canvas;
}

// Scores [k] with labels [k]: a ranked bar list (best first).
function renderRanked(out, used) {
  const sections = [];
  const all = Object.values(out);
  for (const scores of all) {
    if (used.has(scores.key) || !isFloat(scores) || depth(scores.value) !== 1) continue;
    const labels = all.find((o) => !used.has(o.key) && isText(o) && depth(o.value) === 1 && o.value.length === scores.value.length);
    if (!labels) continue;
    used.add(scores.key);
    used.add(labels.key);
    const pairs = labels.value.map((label, i) => [label, scores.value[i]]).sort((a, b) => b[1] - a[1]).slice(0, TOP_BARS);
    const unit = pairs.every(([, s]) => s >= 0 && s <= 1) ? 1 : Math.max(1e-12, ...pairs.map(([, s]) => Math.abs(s)));
    const bars = pairs.map(([label, score]) => {
      const fill = UI.el("span", {class: "fill"});
      fill.style.width = `${Math.max(0, Math.min(100, 100 * Math.abs(score) / unit)).toFixed(1)}%`;
      return UI.el("li", {class: "bar"}, UI.el("span", {class: "label", text: label}),
        UI.el("span", {class: "track"}, fill), UI.el("span", {class: "score", text: score.toFixed(3)}));
    });
    const more = scores.value.length > TOP_BARS ? UI.el("p", {class: "hint", text: `best ${TOP_BARS} of ${scores.value.length}`}) : null;
    sections.push(section(`Ranked ${labels.key}`, [labels.key, scores.key], UI.el("ol", {class: "ranked"}, bars), more));
  }
  return sections;
}

function renderOne(o, sig, sent) {
  if (o.dtype === "DT_STRING" && o.key.endsWith("_bytes")) {
    const items = [o.value].flat(Infinity).map((item) => media(o.key, item && item.b64 !== undefined ? item.b64 : ""));
    return section(o.key, [o.key], UI.el("div", {class: "media"}, items));
  }
  if ((isFloat(o) || INTS.has(o.dtype)) && depth(o.value) === 3 && [1, 3].includes((o.value[0] && o.value[0][0] || []).length)) {
    return section(o.key, [o.key], pixelImage(o.value));
  }
  if (isText(o) && depth(o.value) === 0) return section(o.key, [o.key], textBlock(o.value, sig, sent));
  if (isText(o)) {
    return section(o.key, [o.key], UI.el("ul", {class: "texts"}, [o.value].flat(Infinity).map((t) => UI.el("li", {}, textBlock(t, sig, sent)))));
  }
  if (depth(o.value) === 0) {
    const text = typeof o.value === "number" && isFloat(o) ? String(Number(o.value.toPrecision(6))) : String(o.value);
    return section(o.key, [o.key], UI.el("p", {class: "value", text}));
  }
  const json = JSON.stringify(o.value);
  return section(o.key, [o.key], UI.el("pre", {class: "value", text: json.length > 4000 ? `${json.slice(0, 4000)}\u2026` : json}));
}

// Text that continues a prompt that was sent shows the prompt apart from what the model added.
function textBlock(text, sig, sent) {
  const prompts = Object.keys(sig.inputs).filter((k) => inputKind(k, sig.inputs[k]) === "text")
    .map((k) => [sent[k]].flat()[0]).filter((p) => typeof p === "string" && p && text.startsWith(p))
    .sort((a, b) => b.length - a.length);
  if (!prompts.length) return UI.el("p", {class: "text", text});
  return UI.el("p", {class: "text"}, UI.el("mark", {class: "prompt", title: "your prompt", text: prompts[0]}),
    UI.el("span", {class: "continuation", title: "the model's continuation", text: text.slice(prompts[0].length)}));
}

function media(key, b64) {
  const bytes = UI.base64ToBytes(b64);
  const type = UI.sniff(bytes);
  const url = URL.createObjectURL(new Blob([bytes], {type: type || "application/octet-stream"}));
  state.urls.push(url);
  const extension = type ? type.split("/")[1].replace("jpeg", "jpg") : "bin";
  const link = UI.el("a", {href: url, download: `${NAME}-${key}.${extension}`, text: `download (${formatSize(bytes.length)})`});
  if (type.startsWith("image/")) {
    return UI.el("figure", {}, UI.el("img", {src: url, alt: key, class: "output-image"}), UI.el("figcaption", {}, link));
  }
  if (type.startsWith("audio/")) {
    return UI.el("figure", {}, UI.el("audio", {src: url, controls: true, class: "output-audio"}), UI.el("figcaption", {}, link));
  }
  return UI.el("p", {}, link);
}

// An [H, W, C] tensor (0..255, or 0..1 when nothing is above 1) drawn on a canvas.
function pixelImage(rows) {
  const height = rows.length;
  const width = rows[0].length;
  const flat = rows.flat(2);
  const scale = flat.every((v) => v <= 1) ? 255 : 1;
  const canvas = UI.el("canvas", {width, height, class: "output-pixels"});
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const px = rows[y][x];
      const i = 4 * (y * width + x);
      image.data[i] = px[0] * scale;
      image.data[i + 1] = px[px.length === 3 ? 1 : 0] * scale;
      image.data[i + 2] = px[px.length === 3 ? 2 : 0] * scale;
      image.data[i + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

// ---------------------------------------------------------------------------------------------
// Start: the model's status, its versions, then the chosen version's signatures.

function chooseSignature(name) {
  state.signature = name;
  $("signature").value = name;
  const params = new URLSearchParams(location.search);
  if (name === "serving_default") params.delete("signature");
  else params.set("signature", name);
  history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : ""));
  $("result").replaceChildren();
  $("exchange").hidden = true;
  UI.showError("");
  const sig = state.defs[name];
  $("play").replaceChildren(...(Game.matches(sig) ? [Game.panel((moves) => UI.request(
    UI.modelUrl(NAME, state.version) + ":predict", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({signature_name: name, inputs: {moves: [moves]}})}))] : []));
  buildForm();
}

async function loadMetadata() {
  const answer = await UI.request(UI.modelUrl(NAME, state.version) + "/metadata");
  if (!answer.ok) {
    UI.showError(answer.body.error, `The model answered ${answer.status}:`);
    return;
  }
  state.defs = answer.body.metadata.signature_def.signature_def;
  const names = Object.keys(state.defs).filter((k) => !k.startsWith("__"))
    .sort((a, b) => (b === "serving_default") - (a === "serving_default") || a.localeCompare(b));
  $("signature").replaceChildren(...names.map((k) => UI.el("option", {value: k, text: k})));
  $("signature-field").hidden = names.length < 2;
  const wanted = new URLSearchParams(location.search).get("signature");
  chooseSignature(names.includes(wanted) ? wanted : names.includes("serving_default") ? "serving_default" : names[0]);
  $("form").hidden = names.length === 0;
  document.body.dataset.ready = "true";
}

async function start() {
  document.title = `${NAME} \u00b7 catalogue serve`;
  $("title").textContent = NAME;
  const answer = await UI.request(UI.modelUrl(NAME));
  if (!answer.ok) {
    UI.showError(answer.body.error, `The server answered ${answer.status}:`);
    document.body.dataset.ready = "true";
    return;
  }
  const versions = answer.body.model_version_status;
  $("status").replaceChildren(...versions.map((v) => UI.el("span", {class: "version"}, `version ${v.version} `,
    UI.el("span", {class: `state ${UI.stateClass(v.state)}`, text: v.state}),
    v.status && v.status.error_message ? UI.el("span", {class: "error-text", text: ` ${v.status.error_message}`}) : null)));
  const available = versions.filter((v) => v.state === "AVAILABLE").map((v) => v.version)
    .sort((a, b) => Number(b) - Number(a));
  if (!available.length) {
    UI.showError("No version of this model is AVAILABLE yet; this page shows it once one is (reload).");
    document.body.dataset.ready = "true";
    return;
  }
  $("version").replaceChildren(UI.el("option", {value: "", text: `latest (${available[0]})`}),
    ...available.map((v) => UI.el("option", {value: v, text: v})));
  $("version-field").hidden = available.length < 2;
  $("version").addEventListener("change", () => {
    state.version = $("version").value;
    loadMetadata();
  });
  $("signature").addEventListener("change", () => chooseSignature($("signature").value));
  $("form").addEventListener("submit", run);
  await loadMetadata();
}

start();
