// The modelfn page: lists this function's models (GET /models) and gives each the widget its
// contract asks for. No framework, no build step, no external assets. Everything from the
// server is written with textContent, never as HTML.
//
// A model whose card has a `browser` entry can also run in this browser (ONNX Runtime Web and
// the model's JavaScript hooks, browser.js): the switch in the header sends each request to the
// function, to this browser, or to both, side by side. The static site of `modelfn build
// --target web` is this same page with <body data-site="browser">: its models run only here,
// loaded when the page loads, and nothing entered leaves the page.
"use strict";

const KEY_STORAGE = "modelfn-api-key";
const SITE = document.body.dataset.site === "browser";
// Where the browser bundle is: the static site itself, or the function's /browser/ folder.
const BUNDLE = SITE ? new URL(".", location.href) : new URL("/browser/", location.href);
const SOURCES = { function: "the function", browser: "this browser" };
const timings = {};
let mode = SITE ? "browser" : "function";
const opened = new Map();

function inBrowser(model) {
  if (!opened.has(model.name)) {
    const started = performance.now();
    const loading = import(new URL("browser.js", BUNDLE).href)
      .then((runtime) => runtime.openModel(model, BUNDLE))
      .then((ready) => { ready.loadMs = performance.now() - started; return ready; });
    loading.catch(() => opened.delete(model.name));  // a failed load is tried again next time
    opened.set(model.name, loading);
  }
  return opened.get(model.name);
}

// Every answer a request gets under the current switch: [{source, answer | error, ms}].
async function answers(model, body) {
  const where = model.browser ? mode : "function";
  const sources = where === "both" ? ["function", "browser"] : [where];
  return Promise.all(sources.map(async (source) => {
    const started = performance.now();
    try {
      const answer = source === "browser"
        ? await (await inBrowser(model)).predict(body)
        : await api(predictPath(model.name), body);
      if (timings.firstAnswer === undefined) timings.firstAnswer = performance.now();
      return { source, answer, ms: performance.now() - started };
    } catch (error) {
      return { source, error, ms: performance.now() - started };
    }
  }));
}

function answeredBy(model, result) {
  const where = SITE ? "" : ` on ${SOURCES[result.source]}`;
  return `Answered by ${model.name} v${model.version}${where} in ${result.ms.toFixed(1)} ms.`;
}

function apiHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["x-api-key"] = key;
  return headers;
}

// A file as the form field `field` (multipart/form-data): the browser writes the boundary.
async function upload(path, field, file) {
  const form = new FormData();
  form.append(field, file, file.name);
  const response = await fetch(path, { method: "POST", headers: apiHeaders(), body: form });
  let data = null;
  try { data = await response.json(); } catch (ignored) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

async function api(path, body) {
  const options = body === undefined
    ? { headers: apiHeaders() }
    : { method: "POST", headers: apiHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (ignored) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function predictPath(name) {
  return `/models/${encodeURIComponent(name)}/predict`;
}

// -- a drawing pad: the drawing, cropped and centred, becomes size x size cells of 0..scale --------
function sketchWidget(model) {
  const page = model.page;
  const id = `pad-${model.name}`;
  const canvas = el("canvas", { id, width: "280", height: "280", tabindex: "0",
    "aria-label": "Drawing pad: draw a digit with the mouse or a finger" });
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.lineCap = "round";
  context.lineJoin = "round";
  context.lineWidth = 22;
  context.strokeStyle = "#000";

  const panels = {};
  const results = el("div", { class: "results" });
  const clear = el("button", { type: "button", class: "secondary", text: "Clear" });
  const send = el("button", { type: "button", text: "Predict" });

  let drawing = false;
  let inked = false;
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    inked = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.beginPath();
    context.moveTo(x, y);
    context.lineTo(x + 0.01, y);
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    predict();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  clear.addEventListener("click", () => {
    context.clearRect(0, 0, canvas.width, canvas.height);
    inked = false;
    for (const panel of Object.values(panels)) panel.clear();
  });
  send.addEventListener("click", predict);

  // A photo or a scan, where the contract takes uploads: sent as the file itself, the hook reads it.
  let picker = null;
  if (model.uploads && !SITE) {
    picker = el("input", { type: "file", accept: model.uploads.media_types.join(","),
      "aria-label": "Upload a photo of a digit", "data-role": "upload" });
    picker.addEventListener("change", async () => {
      const file = picker.files && picker.files[0];
      if (!file) return;
      // A photo needs the Python hook (Pillow): the function answers it, whatever the switch says.
      const panel = panelOf("function");
      for (const [source, other] of Object.entries(panels)) if (source !== "function") other.root.hidden = true;
      if (file.size > model.uploads.max_bytes) {
        panel.fail(`The file is over ${model.uploads.max_bytes.toLocaleString()} bytes.`);
        return;
      }
      panel.wait();
      const started = performance.now();
      try {
        panel.show({ source: "function", answer: await upload(predictPath(model.name), model.uploads.field, file),
          ms: performance.now() - started });
      } catch (error) {
        panel.fail(error.message);
      }
      picker.value = "";
    });
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  }

  function panelOf(source) {
    if (!panels[source]) {
      panels[source] = resultPanel(model, source);
      results.append(panels[source].root);
    }
    panels[source].root.hidden = false;
    return panels[source];
  }

  async function predict() {
    const first = panelOf(model.browser ? (mode === "both" ? "function" : mode) : "function");
    if (!inked) { first.fail("Draw something first."); return; }
    const sources = model.browser && mode === "both" ? ["function", "browser"] : [model.browser ? mode : "function"];
    for (const [source, panel] of Object.entries(panels)) panel.root.hidden = !sources.includes(source);
    for (const source of sources) panelOf(source).wait();
    const body = { [page.input]: cells(canvas, page.size, page.scale) };
    for (const result of await answers(model, body)) panelOf(result.source).show(result);
  }

  const uploadRow = picker ? el("p", {}, el("label", { text: "or a photo: " }, picker)) : null;
  panelOf(model.browser && mode !== "both" ? mode : "function");
  return el("div", { class: "pad" },
    el("div", {}, canvas, el("div", {}, clear, " ", send), uploadRow), results);
}

// One source's answer to a drawing: the class, a bar per class, and who answered in how long.
function resultPanel(model, source) {
  const page = model.page;
  const heading = el("h3", { text: SITE ? "Prediction" : `Prediction · ${SOURCES[source]}` });
  const prediction = el("p", { class: "prediction", "aria-live": "polite", "data-role": "prediction", text: "–" });
  const bars = el("ol", { class: "bars", "aria-label": `Probability of each class (${SOURCES[source]})` });
  const status = el("p", { class: "meta", role: "status" });
  const root = el("div", { class: "result", "data-source": source }, heading, prediction, bars, status);
  return {
    root,
    clear() { prediction.textContent = "–"; bars.replaceChildren(); status.textContent = ""; status.classList.remove("error"); },
    wait() { status.classList.remove("error"); status.textContent = "Asking the model…"; },
    fail(message) { status.textContent = message; status.classList.add("error"); },
    show(result) {
      if (result.error) { this.fail(result.error.message); return; }
      status.classList.remove("error");
      prediction.textContent = String(result.answer[page.label]);
      showScores(bars, result.answer[page.scores]);
      status.textContent = answeredBy(model, result);
    },
  };
}

// The ink's bounding box, scaled to fit (keeping its shape) and centred in a (4 size)^2 bitmap;
// each cell counts the inked pixels of its 4 x 4 block, scaled to 0..scale. This is how
// scikit-learn's load_digits was made from 32 x 32 bitmaps.
function cells(canvas, size, scale) {
  const { width, height } = canvas;
  const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let top = height, left = width, bottom = -1, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (pixels[(y * width + x) * 4 + 3] > 0) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  const side = size * 4;
  const small = document.createElement("canvas");
  small.width = side;
  small.height = side;
  const target = small.getContext("2d", { willReadFrequently: true });
  if (bottom >= 0) {
    const w = right - left + 1, h = bottom - top + 1;
    const fit = (side - 2) / Math.max(w, h);
    const dw = Math.max(1, w * fit), dh = Math.max(1, h * fit);
    target.drawImage(canvas, left, top, w, h, (side - dw) / 2, (side - dh) / 2, dw, dh);
  }
  const ink = target.getImageData(0, 0, side, side).data;
  const rows = [];
  for (let row = 0; row < size; row++) {
    const values = [];
    for (let column = 0; column < size; column++) {
      let count = 0;
      for (let y = row * 4; y < row * 4 + 4; y++) {
        for (let x = column * 4; x < column * 4 + 4; x++) if (ink[(y * side + x) * 4 + 3] > 64) count++;
      }
      values.push(Math.round(count / 16 * scale * 1000) / 1000);
    }
    rows.push(values);
  }
  return rows;
}

function showScores(list, scores) {
  list.replaceChildren();
  if (!Array.isArray(scores)) return;
  scores.forEach((score, index) => {
    const meter = el("meter", { min: "0", max: "1", value: String(score), "aria-label": `class ${index}` });
    list.append(el("li", {}, el("span", { text: String(index) }), meter,
      el("span", { text: `${(score * 100).toFixed(1)}%` })));
  });
}

// A generative model's answer, streamed: each piece of text is shown as it arrives (server-sent events
// of /openai/v1/chat/completions, read from the response body as it comes).
async function streamChat(model, text, item) {
  const response = await fetch("/openai/v1/chat/completions", {
    method: "POST", headers: apiHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({ model: model.name, messages: [{ role: "user", content: text }], stream: true }),
  });
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    throw new Error((data && data.error) || `HTTP ${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const events = pending.split("\n\n");
    pending = events.pop();
    for (const event of events) {
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) item.append(delta.content);
    }
  }
}

// -- a chat: each message is sent as {input: text}; the answer's reply field is shown ---------------
function chatWidget(model) {
  const page = model.page;
  const id = `message-${model.name}`;
  const log = el("ol", { class: "chat-log", role: "log", "aria-live": "polite", "aria-label": `Conversation with ${model.name}` });
  const input = el("input", { id, type: "text", maxlength: "500", autocomplete: "off", required: "" });
  const form = el("form", { class: "chat-form" },
    el("label", { for: id, class: "sr-only", text: "Your message" }), input,
    el("button", { type: "submit", text: "Send" }));
  if (model.example && typeof model.example[page.input] === "string") input.placeholder = model.example[page.input];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    log.append(el("li", { class: "user", text }));
    input.value = "";
    if (model.generative) {  // the words appear as the model writes them
      const item = el("li", { class: "bot", "data-source": "function", "aria-busy": "true" });
      log.append(item);
      try { await streamChat(model, text, item); } catch (error) { item.className = "bot error"; item.append(error.message); }
      item.setAttribute("aria-busy", "false");
      log.scrollTop = log.scrollHeight;
      return;
    }
    const results = await answers(model, { [page.input]: text });
    for (const result of results) {
      const label = results.length > 1 ? el("span", { class: "source", text: `${SOURCES[result.source]}: ` }) : null;
      const item = el("li", { class: result.error ? "bot error" : "bot", "data-source": result.source,
        title: result.error ? "" : answeredBy(model, result) }, label);
      if (result.error) {
        item.append(result.error.message);
      } else {
        const answer = result.answer;
        const reply = typeof answer === "string" ? answer : answer[page.reply];
        item.append(typeof reply === "string" ? reply : JSON.stringify(answer));
      }
      log.append(item);
    }
    log.scrollTop = log.scrollHeight;
  });
  return el("div", {}, log, form);
}

// -- any model: its example request, editable, and the answer ---------------------------------------
function formWidget(model) {
  const id = `body-${model.name}`;
  const body = el("textarea", { id, spellcheck: "false" });
  body.value = JSON.stringify(model.example || {}, null, 2);
  const output = el("div", { "aria-live": "polite" });
  const send = el("button", { type: "button", text: "Send" });
  send.addEventListener("click", async () => {
    let parsed;
    try { parsed = JSON.parse(body.value); } catch (error) { output.replaceChildren(el("pre", { text: `Not JSON: ${error.message}` })); return; }
    const results = await answers(model, parsed);
    output.replaceChildren(...results.map((result) => el("div", { class: "result", "data-source": result.source },
      results.length > 1 ? el("h3", { text: SOURCES[result.source] }) : null,
      el("pre", { text: result.error ? result.error.message : JSON.stringify(result.answer, null, 2) }),
      result.error ? null : el("p", { class: "meta", text: answeredBy(model, result) }))));
  });
  return el("div", {}, el("label", { for: id, text: "Request body (JSON)" }), body, send, output);
}

const WIDGETS = { sketch: sketchWidget, chat: chatWidget, form: formWidget };

function modelSection(model) {
  const heading = `heading-${model.name}`;
  const section = el("section", { class: "model", "aria-labelledby": heading },
    el("h2", { id: heading, text: model.name }),
    el("p", { class: "meta", text: `version ${model.version}` }),
    el("p", { text: model.description }));
  const metrics = Object.entries(model.metrics || {});
  if (metrics.length) {
    section.append(el("p", { class: "meta", text: metrics.map(([name, value]) => `${name.replaceAll("_", " ")}: ${value}`).join(" · ") }));
  }
  section.append((WIDGETS[model.page.widget] || formWidget)(model));
  return section;
}

// The header's switch, shown when a model can also run in this browser.
function modeSwitch(models) {
  const names = models.filter((model) => model.browser).map((model) => model.name);
  const fieldset = el("fieldset", { class: "mode", id: "mode" },
    el("legend", { text: `Answer ${names.join(", ")} with` }));
  for (const [value, label] of [["function", "the function"], ["browser", "this browser"], ["both", "both, side by side"]]) {
    const input = el("input", { type: "radio", name: "mode", value, id: `mode-${value}` });
    input.checked = value === mode;
    input.addEventListener("change", () => { mode = value; });
    fieldset.append(el("label", { for: `mode-${value}` }, input, ` ${label}`));
  }
  fieldset.append(el("p", { class: "note", text: "In this browser, the model and its hooks run on your device with ONNX Runtime Web; nothing is sent." }));
  return fieldset;
}

async function listModels() {
  if (!SITE) return (await api("/models")).models;
  const response = await fetch(new URL("models.json", BUNDLE));
  if (!response.ok) throw new Error(`models.json: HTTP ${response.status}`);
  return (await response.json()).models;
}

async function load() {
  const summary = document.getElementById("summary");
  const keyForm = document.getElementById("key-form");
  const main = document.getElementById("models");
  try {
    const models = await listModels();
    timings.modelsListed = performance.now();
    keyForm.hidden = true;
    const count = models.length === 1 ? "one model" : `${models.length} models`;
    summary.textContent = SITE ? `This page runs ${count} in your browser.` : `This function serves ${count}.`;
    const sections = models.map(modelSection);
    if (!SITE && models.some((model) => model.browser)) sections.unshift(modeSwitch(models));
    main.replaceChildren(...sections);
    if (SITE) await openAll(models, summary, count);
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      summary.textContent = "This function needs an API key.";
      keyForm.hidden = false;
    } else {
      summary.textContent = `Could not list the models: ${error.message}`;
    }
  }
}

// The static site loads every model as the page loads, so that no request follows.
async function openAll(models, summary, count) {
  const ready = await Promise.all(models.map(inBrowser));
  timings.ready = performance.now();
  const threads = ready[0] ? ready[0].threads : 1;
  summary.textContent = `This page runs ${count} in your browser (ONNX Runtime Web, ${threads === 1 ? "one thread" : `${threads} threads`}); nothing you enter leaves it.`;
  document.body.dataset.ready = "true";
}

// For scripts (tests, timing): the same predictions the widgets make.
async function openedModel(name) {
  if (!opened.has(name)) throw new Error(`${name} is not open in this browser`);
  return opened.get(name);
}

window.modelfn = {
  timings,
  async predict(name, body) { return (await openedModel(name)).predict(body); },
  async outputs(name, body) { return (await openedModel(name)).outputs(body); },
};

if (!SITE) {
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, document.getElementById("api-key").value);
    load();
  });
}
load();
