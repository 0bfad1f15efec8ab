// The modelfn page: lists this function's models (GET /models) and gives each the widget its
// contract asks for. No framework, no build step, no external assets. Everything from the
// server is written with textContent, never as HTML.
"use strict";

const KEY_STORAGE = "modelfn-api-key";

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

  const prediction = el("p", { class: "prediction", "aria-live": "polite", "data-role": "prediction", text: "–" });
  const bars = el("ol", { class: "bars", "aria-label": "Probability of each class" });
  const status = el("p", { class: "meta", role: "status" });
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
    prediction.textContent = "–";
    bars.replaceChildren();
    status.textContent = "";
  });
  send.addEventListener("click", predict);

  // A photo or a scan, where the contract takes uploads: sent as the file itself, the hook reads it.
  let picker = null;
  if (model.uploads) {
    picker = el("input", { type: "file", accept: model.uploads.media_types.join(","),
      "aria-label": "Upload a photo of a digit", "data-role": "upload" });
    picker.addEventListener("change", async () => {
      const file = picker.files && picker.files[0];
      if (!file) return;
      if (file.size > model.uploads.max_bytes) {
        status.textContent = `The file is over ${model.uploads.max_bytes.toLocaleString()} bytes.`;
        status.classList.add("error");
        return;
      }
      status.classList.remove("error");
      status.textContent = "Asking the model…";
      try {
        show(await upload(predictPath(model.name), model.uploads.field, file));
      } catch (error) {
        status.textContent = error.message;
        status.classList.add("error");
      }
      picker.value = "";
    });
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  }

  async function predict() {
    if (!inked) { status.textContent = "Draw something first."; return; }
    status.textContent = "Asking the model…";
    try {
      show(await api(predictPath(model.name), { [page.input]: cells(canvas, page.size, page.scale) }));
    } catch (error) {
      status.textContent = error.message;
      status.classList.add("error");
    }
  }

  function show(answer) {
    status.classList.remove("error");
    prediction.textContent = String(answer[page.label]);
    showScores(bars, answer[page.scores]);
    status.textContent = `Answered by ${model.name} v${model.version}.`;
  }

  const uploadRow = picker ? el("p", {}, el("label", { text: "or a photo: " }, picker)) : null;
  return el("div", { class: "pad" },
    el("div", {}, canvas, el("div", {}, clear, " ", send), uploadRow),
    el("div", {}, el("h3", { text: "Prediction" }), prediction, bars, status));
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
    try {
      const answer = await api(predictPath(model.name), { [page.input]: text });
      const reply = typeof answer === "string" ? answer : answer[page.reply];
      log.append(el("li", { class: "bot", text: typeof reply === "string" ? reply : JSON.stringify(answer) }));
    } catch (error) {
      log.append(el("li", { class: "bot error", text: error.message }));
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
  const output = el("pre", { "aria-live": "polite" });
  const send = el("button", { type: "button", text: "Send" });
  send.addEventListener("click", async () => {
    let parsed;
    try { parsed = JSON.parse(body.value); } catch (error) { output.textContent = `Not JSON: ${error.message}`; return; }
    try {
      output.textContent = JSON.stringify(await api(predictPath(model.name), parsed), null, 2);
    } catch (error) {
      output.textContent = error.message;
    }
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

async function load() {
  const summary = document.getElementById("summary");
  const keyForm = document.getElementById("key-form");
  const main = document.getElementById("models");
  try {
    const { models } = await api("/models");
    keyForm.hidden = true;
    summary.textContent = `This function serves ${models.length === 1 ? "one model" : `${models.length} models`}.`;
    main.replaceChildren(...models.map(modelSection));
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      summary.textContent = "This function needs an API key.";
      keyForm.hidden = false;
    } else {
      summary.textContent = `Could not list the models: ${error.message}`;
    }
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, document.getElementById("api-key").value);
  load();
});
load();
