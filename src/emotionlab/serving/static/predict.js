// The page of `emotionlab serve`: send one photo to POST /predict, draw every face's box in its emotion's
// colour, numbered as the rows of the table (the order of the JSON answer; faces.js draws both). A failed
// upload clears the last result and shows the server's message. Nothing is fetched from another host.
"use strict";

let limits = null;   // the service's limits, from /model
let uploads = 0;     // the newest upload: answers to older ones are dropped
let photoUrl = null;

const $ = id => document.getElementById(id);
// With `emotionlab serve --token`, open the page with #token=TOKEN after its address: a fragment never leaves
// the browser (no server log holds it); the API calls carry it.
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token");
const AUTH = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};

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
  fillTable($("faces"), record);
  $("summary").textContent = record.no_face
    ? `No face found: the whole image reads as ${record.label} (${percent(record.confidence)}).`
    : `${faces.length} face(s); the largest (1) looks ${record.label} (${percent(record.confidence)}).`;
  const photo = $("photo");
  photoUrl = URL.createObjectURL(file);
  photo.onload = () => {
    drawBoxes($("boxes"), faces, width || photo.naturalWidth, height || photo.naturalHeight);
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
