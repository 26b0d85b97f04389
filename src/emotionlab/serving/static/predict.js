// The page of `emotionlab serve`: send one photo to POST /predict, draw every face's box in its emotion's
// colour, numbered as the rows of the table (the order of the JSON answer). A failed upload clears the last
// result and shows the server's message. Nothing is fetched from another host.
"use strict";

// Okabe-Ito colours (told apart with the common colour-vision deficiencies), one per emotion the project knows.
const COLOURS = {
  angry: "#d55e00", disgusted: "#009e73", fearful: "#cc79a7", happy: "#f0e442",
  neutral: "#bbbbbb", sad: "#0072b2", surprised: "#e69f00", contempt: "#56b4e9",
};
// For a model with other class names: given in the order of its labels.
const SPARE = ["#882255", "#44aa99", "#999933", "#332288", "#117733", "#aa4499", "#88ccee", "#ddcc77"];
const colours = new Map();
let limits = null;   // the service's limits, from /model
let uploads = 0;     // the newest upload: answers to older ones are dropped
let photoUrl = null;

const $ = id => document.getElementById(id);
// With `emotionlab serve --token`, open the page with #token=TOKEN after its address: a fragment never leaves
// the browser (no server log holds it); the API calls carry it.
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");
const AUTH = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};

function colourOf(label) {
  if (!colours.has(label)) {
    const spare = Array.from(colours.keys()).filter(name => !(name in COLOURS)).length;
    colours.set(label, COLOURS[label] || SPARE[spare % SPARE.length]);
  }
  return colours.get(label);
}

function textColourOn(hex) {  // black on light colours, white on dark ones
  const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 ? "#000" : "#fff";
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function swatch(label) {
  const node = element("span", undefined, "swatch");
  node.style.background = colourOf(label);
  return node;
}

const percent = (value, digits = 0) => `${(value * 100).toFixed(digits)}%`;

function showLegend(labels) {
  const legend = $("legend");
  legend.replaceChildren();
  for (const label of labels) {
    const item = element("li");
    item.dataset.label = label;
    item.append(swatch(label), label);
    legend.append(item);
  }
}

function setState(state) { document.body.dataset.state = state; }

function clearResult() {
  $("result").hidden = true;
  $("boxes").replaceChildren();
  $("faces").tHead.replaceChildren();
  $("faces").tBodies[0].replaceChildren();
  $("photo").removeAttribute("src");
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = null;
  $("summary").textContent = "";
}

function showError(message) {
  clearResult();
  $("error").textContent = message;
  setState("error");
}

async function send(file) {
  const upload = ++uploads;
  clearResult();
  $("error").textContent = "";
  setState("busy");
  // A body over the request cap is cut off by the server before it is read: say so without sending it.
  if (limits && file.size > limits.max_request_bytes) {
    showError(`${file.name}: upload of ${file.size.toLocaleString("en")} bytes is over the limit of ` +
              `${limits.max_upload_bytes.toLocaleString("en")} bytes per image`);
    return;
  }
  $("summary").textContent = "classifying…";
  const form = new FormData();
  form.append("files", file);
  let response;
  try {
    for (let attempt = 0; attempt < 4; attempt++) {  // busy (503): wait as the server asks, then try again
      response = await fetch("predict", { method: "POST", body: form, headers: AUTH });
      if (response.status !== 503 || attempt === 3) break;
      const seconds = Number(response.headers.get("Retry-After")) || 2;
      if (upload === uploads) $("summary").textContent = `the service is busy; trying again in ${seconds} s…`;
      await new Promise(done => setTimeout(done, seconds * 1000));
    }
  } catch (error) {
    if (upload === uploads) {
      showError(`${file.name}: could not reach the service (${error.message}); is emotionlab serve running?`);
    }
    return;
  }
  const text = await response.text().catch(() => "");
  let body = null;
  try { body = JSON.parse(text); } catch { /* not JSON: a proxy's page, say */ }
  if (upload !== uploads) return;
  if (!response.ok) {
    let detail = body && body.detail !== undefined ? body.detail : text.trim().slice(0, 300);
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    showError(`${response.status} ${response.statusText}: ${detail || "no message"}`.replace(/\s+:/, ":"));
    return;
  }
  if (!body || !Array.isArray(body.results) || !body.results.length) {
    showError(`${file.name}: the service gave an answer this page cannot read`);
    return;
  }
  show(file, body.results[0]);
}

function show(file, record) {
  const faces = record.no_face ? [] : record.faces;
  const [width, height] = record.size || [0, 0];
  showTable(record, faces);
  $("summary").textContent = record.no_face
    ? `No face found: the whole image reads as ${record.label} (${percent(record.confidence)}).`
    : `${faces.length} face(s); the largest (1) looks ${record.label} (${percent(record.confidence)}).`;
  const photo = $("photo");
  photoUrl = URL.createObjectURL(file);
  photo.onload = () => {
    drawBoxes(faces, width || photo.naturalWidth, height || photo.naturalHeight);
    setState("done");
  };
  photo.onerror = () => {  // e.g. TIFF: the service reads it, this browser cannot show it
    $("figure").hidden = true;
    $("summary").textContent += " (this browser cannot display the image; the faces are listed below)";
    setState("done");
  };
  $("figure").hidden = false;
  $("result").hidden = false;
  photo.src = photoUrl;
}

function drawBoxes(faces, width, height) {
  const boxes = $("boxes");
  boxes.replaceChildren();
  faces.forEach((face, index) => {
    const [x, y, w, h] = face.box;
    const colour = colourOf(face.label);
    const box = element("div", undefined, "box");
    box.dataset.face = String(index + 1);
    box.dataset.label = face.label;
    Object.assign(box.style, {
      left: `${(100 * x) / width}%`, top: `${(100 * y) / height}%`,
      width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%`, borderColor: colour,
    });
    if (y / height < 0.08) box.classList.add("low");  // no room above: the tag goes under the box
    const tag = element("span", `${index + 1} ${face.label} ${percent(face.confidence)}`, "tag");
    tag.style.background = colour;
    tag.style.color = textColourOn(colour);
    box.append(tag);
    boxes.append(box);
  });
}

function showTable(record, faces) {
  const labels = Object.keys(record.probabilities);
  const head = element("tr");
  head.append(element("th", "face"), element("th", "emotion"), ...labels.map(label => element("th", label)));
  $("faces").tHead.replaceChildren(head);
  const rows = faces.length ? faces : [{ ...record, whole: true }];
  $("faces").tBodies[0].replaceChildren(...rows.map((face, index) => {
    const row = element("tr");
    row.dataset.face = face.whole ? "" : String(index + 1);
    row.dataset.label = face.label;
    const number = element("td");
    number.append(swatch(face.label), face.whole ? "whole image" : String(index + 1));
    const reading = face.compound ? ` (${face.compound.text})` : "";
    row.append(number, element("td", `${face.label} ${percent(face.confidence)}${reading}`));
    for (const label of labels) {
      row.append(element("td", percent(face.probabilities[label], 1), label === face.label ? "best" : ""));
    }
    return row;
  }));
}

function start() {
  const drop = $("drop"), input = $("file");
  $("curl-example").textContent = `curl -F files=@photo.jpg ${new URL("predict", document.baseURI).href}`;
  fetch("model", { headers: AUTH })
    .then(response => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))))
    .then(model => {
      limits = model;
      model.labels.forEach(colourOf);
      showLegend(model.labels);
      // `serve --five`: a model that also knows neutral answers among the five only
      const among = model.restricted_from ? ` (answers among these only, of its ${model.restricted_from.join(", ")})` : "";
      $("model").textContent =
        `model: ${model.architecture}, labels: ${model.labels.join(", ")}${among}, face detector: ${model.detector}`;
      if (model.formats) input.accept = model.formats.map(name => `image/${name.toLowerCase()}`).join(",");
    })
    .catch(error => { $("model").textContent = `model information unavailable (${error.message})`; });
  input.onchange = () => { if (input.files[0]) send(input.files[0]); input.value = ""; };
  drop.ondragover = event => { event.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = event => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) send(event.dataTransfer.files[0]);
  };
}

document.addEventListener("DOMContentLoaded", start);
