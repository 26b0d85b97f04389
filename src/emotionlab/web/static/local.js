// emotionlab in the browser: BlazeFace, the crop and the classifier run here, by ONNX Runtime Web (WebAssembly,
// one thread), on photos the user picks or frames of their camera. Nothing is sent anywhere: the page only
// reads its own folder (config.json, the ONNX models, ONNX Runtime's files).
// Each photo gives the record `emotionlab predict --format jsonl` gives for it (vision.js does the image work
// exactly as the Python path does); boxes and table are drawn as on the service page
// (faces.js, from serving/static/).
"use strict";

const V = window.EmotionVision;

const DECIMALS = 1e6;                 // records round probabilities to six decimals, as the Python ones do
const MAX_PIXELS = 50_000_000;        // the Python image reader's limit too

let config = null;
const blaze = {};                     // "short" / "full" -> {session, anchors}
let model = null;                     // the chosen entry of config.models
let queue = Promise.resolve();        // one model run at a time: one WebAssembly thread
let camera = null;                    // {stream, frames, started, times}
const timings = {};                   // stage -> [calls, milliseconds]: where a frame's time goes

function timed(stage, started) {
  const entry = timings[stage] || (timings[stage] = [0, 0]);
  entry[0] += 1;
  entry[1] += performance.now() - started;
}

const $ = id => document.getElementById(id);

// ---- the pipeline: image -> record ----------------------------------------------------------------------

function run(task) {  // queue a job that uses the models; resolves with its result
  const result = queue.then(task);
  queue = result.catch(() => {});
  return result;
}

async function session(file) {
  return ort.InferenceSession.create(file, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
}

async function blazeBoxes(name, picture) {
  const settings = config.detector, spec = settings.models[name];
  if (!blaze[name]) blaze[name] = { session: await session(spec.file), anchors: V.anchors(spec) };
  const { session: detector, anchors } = blaze[name];
  let started = performance.now();
  const letter = V.letterbox(picture, spec.input_size);
  timed(`letterbox ${name}`, started);
  const size = spec.input_size;
  started = performance.now();
  const outputs = await detector.run({
    [detector.inputNames[0]]: new ort.Tensor("float32", letter.tensor, [1, 3, size, size]),
  });
  timed(`blazeface ${name}`, started);
  const regressors = outputs[detector.outputNames[0]].data, logits = outputs[detector.outputNames[1]].data;
  const label = name === "short" ? "blaze" : "blaze-full";
  return V.decodeDetections(regressors, logits, anchors, spec, settings).map(found => V.toBox(found, letter, label));
}

// BlazeDetector.detect(): short range, plus full range on wide scenes; largest first.
async function findFaces(picture, detectorName) {
  const settings = config.detector;
  const { width, height } = picture;
  if (Math.min(width, height) < settings.min_image_side || width * height > settings.max_pixels) return [];
  if (detectorName === "blaze-full") return V.sortedBoxes(await blazeBoxes("full", picture), width, height);
  let found = V.sortedBoxes(await blazeBoxes("short", picture), width, height);
  if (V.looksLikeAScene(found, picture, settings)) {
    const more = (await blazeBoxes("full", picture)).filter(box => box && V.newFace(box, found, settings.new_face_overlap));
    found = V.sortedBoxes(found.concat(more), width, height);
  }
  return found;
}

function compoundReading(row, labels, ratio) {  // inference/compound.py compound_reading()
  // Neutral is no emotion: a face read as neutral has no compound, and neutral is never half of one.
  const order = row.map((value, index) => [value, index]).sort((p, q) => q[0] - p[0] || p[1] - q[1]);
  if (order.length < 2 || labels[order[0][1]] === "neutral") return null;
  const emotions = order.filter(([, index]) => labels[index] !== "neutral");
  if (emotions.length < 2) return null;
  const [[first, i], [second, j]] = emotions;
  if (first <= 0 || second < ratio * first) return null;
  return { labels: [labels[i], labels[j]], text: `${labels[i]} + ${labels[j]}`, ratio: Math.round((second / first) * 1e4) / 1e4 };
}

function reading(row, entry) {
  const labels = entry.labels;
  let best = 0;
  row.forEach((value, index) => { if (value > row[best]) best = index; });
  const probabilities = {};
  labels.forEach((label, index) => { probabilities[label] = Math.round(row[index] * DECIMALS) / DECIMALS; });
  return {
    label: labels[best], confidence: Math.round(row[best] * DECIMALS) / DECIMALS, probabilities,
    compound: compoundReading(Array.from(row), labels, entry.compound_ratio),
  };
}

// The classifier runs in its own worker (classify.js): ask it, get the probability rows back.
const worker = { thread: null, waiting: new Map(), next: 0 };

function classify(entry, inputs, count) {
  if (!worker.thread) {
    worker.thread = new Worker("classify.js");
    worker.thread.onmessage = ({ data }) => {
      const { resolve, reject, started } = worker.waiting.get(data.id);
      worker.waiting.delete(data.id);
      timed("classifier", started);
      if (data.error) reject(new Error(data.error));
      else resolve(data.rows);
    };
  }
  return new Promise((resolve, reject) => {
    const id = worker.next++;
    worker.waiting.set(id, { resolve, reject, started: performance.now() });
    worker.thread.postMessage({ id, file: entry.file, inputs, count, size: entry.input_size }, [inputs.buffer]);
  });
}

// Recognizer.predict() in two stages. prepare(): every face found and cropped as the model was trained (the
// whole image when there is none), as one batch of model inputs; on the page's thread, one image at a time.
async function prepare(picture, name, entry = model) {
  let boxes = entry.faces ? await findFaces(picture, entry.faces.detector) : [];
  boxes = boxes.filter(box => V.canCrop(box, picture.width, picture.height));
  const started = performance.now();
  const crops = boxes.length ? boxes.map(box => V.cropFace(picture, box, entry.faces.margin)) : [picture];
  const size = entry.input_size, length = 3 * size * size;
  const inputs = new Float32Array(crops.length * length);
  crops.forEach((crop, index) => V.modelInput(crop, entry, inputs, index * length));
  timed("crop and preprocess", started);
  return { name, entry, boxes, inputs, count: crops.length, size: [picture.width, picture.height] };
}

// ... then classified in one call (the worker), giving the fields of a jsonl record of `emotionlab predict`.
async function finish(prepared) {
  const { entry, boxes, count } = prepared;
  const rows = await classify(entry, prepared.inputs, count), classes = entry.labels.length;
  const readings = Array.from({ length: count }, (_, index) => reading(rows.subarray(index * classes, (index + 1) * classes), entry));
  const faces = boxes.map((box, index) => ({ box: [box.x, box.y, box.w, box.h], ...readings[index] }));
  return { path: prepared.name, size: prepared.size, ...readings[0], no_face: !boxes.length, faces };
}

// Pixels as the Python reader gives them: EXIF orientation applied, no colour management, transparency on white.
async function decode(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new Error("cannot decode image (not a format this browser reads, or a damaged file)");
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) throw new Error(`image too large (${width}x${height} pixels)`);
  const picture = fromDrawable(bitmap, width, height);
  bitmap.close();
  return picture;
}

let scratch = null;  // one canvas for decoding and camera frames

function fromDrawable(source, width, height) {
  if (!scratch) scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  const context = scratch.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#fff";
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < rgba.length; p += 4, q += 3) {
    rgb[q] = rgba[p]; rgb[q + 1] = rgba[p + 1]; rgb[q + 2] = rgba[p + 2];
  }
  return V.image(width, height, rgb);
}

async function predictFile(file, name = file.name) {
  try {
    return await finish(await run(async () => prepare(await decode(file), name)));
  } catch (error) {
    return { path: name, error: error.message || String(error) };
  }
}

function summaryOf(record) {
  if (record.error) return `${record.path}: ${record.error}`;
  return record.no_face
    ? `No face found: the whole image reads as ${record.label} (${percent(record.confidence)}).`
    : `${record.faces.length} face(s); the largest (1) looks ${record.label} (${percent(record.confidence)}).`;
}

function showRecord(file, record) {
  const block = element("section", undefined, "result");
  block.dataset.name = record.path;
  block.append(element("h2", record.path), element("p", summaryOf(record), record.error ? "error" : "summary"));
  if (!record.error) {
    const figure = element("figure", undefined, "figure");
    const photo = element("img");
    photo.alt = record.path;
    const layer = element("div", undefined, "boxes");
    figure.append(photo, layer);
    const table = element("table", undefined, "faces");
    table.append(element("thead"), element("tbody"));
    const url = URL.createObjectURL(file);
    photo.onload = () => { drawBoxes(layer, record.no_face ? [] : record.faces, ...record.size); URL.revokeObjectURL(url); };
    photo.src = url;
    fillTable(table, record);
    block.append(figure, table);
  }
  $("results").prepend(block);
}

// ---- the page ---------------------------------------------------------------------------------------------

const state = { records: [], pending: 0 };

async function predictFiles(files) {
  $("error").textContent = "";
  document.body.dataset.state = "busy";
  state.pending += files.length;
  for (const file of files) {
    const record = await predictFile(file);
    state.records.push(record);
    showRecord(file, record);
    state.pending -= 1;
  }
  document.body.dataset.state = state.pending ? "busy" : "done";
}

// Each new frame is analysed once. Two frames at most are in flight: while the worker classifies one, this
// thread finds the faces of the next; a frame that comes while both stages are busy is skipped.
async function cameraFrame() {
  if (!camera) return;
  const video = $("video");
  const width = video.videoWidth, height = video.videoHeight;
  const current = camera;
  if (!width || !height || current.inFlight >= 2 || current.detecting) {
    nextFrame();
    return;
  }
  current.inFlight += 1;
  current.detecting = true;
  const started = performance.now();
  const picture = fromDrawable(video, width, height);
  timed("camera frame pixels", started);
  let prepared;
  try {
    prepared = await run(async () => prepare(picture, "camera"));
  } finally {
    current.detecting = false;
  }
  nextFrame();  // this thread is free: look at the next frame while the worker classifies this one
  const record = await finish(prepared).finally(() => { current.inFlight -= 1; });
  if (camera !== current) return;
  showFrame(record, width, height);
}

function showFrame(record, width, height) {
  camera.frames += 1;
  const now = performance.now();
  camera.times.push(now);
  while (camera.times.length > 1 && now - camera.times[0] > 2000) camera.times.shift();
  const span = (camera.times[camera.times.length - 1] - camera.times[0]) / 1000;
  camera.fps = span > 0 ? (camera.times.length - 1) / span : 0;
  camera.last = record;
  drawBoxes(document.querySelector("#live .boxes"), record.no_face ? [] : record.faces, width, height);
  fillTable(document.querySelector("#live .faces"), record);
  $("live-summary").textContent = `${summaryOf(record)} ${camera.fps.toFixed(1)} frames/s`;
}

function nextFrame() {  // analyse each new camera frame once, one at a time
  if (!camera) return;
  const video = $("video");
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => cameraFrame());
  else requestAnimationFrame(() => cameraFrame());
}

async function toggleCamera() {
  const button = $("camera");
  if (camera) {
    camera.stream.getTracks().forEach(track => track.stop());
    camera = null;
    $("live").hidden = true;
    button.textContent = "Turn the camera on";
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    camera = { stream, frames: 0, started: performance.now(), times: [], fps: 0, last: null, inFlight: 0, detecting: false };
    $("video").srcObject = stream;
    $("live").hidden = false;
    button.textContent = "Turn the camera off";
    nextFrame();
  } catch (error) {
    $("error").textContent = `camera unavailable: ${error.message || error.name}`;
  }
}

function chooseModel(name) {
  model = config.models.find(entry => entry.name === name) || config.models[0];
  colours.clear();
  model.labels.forEach(colourOf);
  showLegend(model.labels);
  const faces = model.faces ? `faces found by BlazeFace (${model.faces.detector}), margin ${model.faces.margin}` : "whole images";
  $("model").textContent = `model: ${model.name} (${model.architecture}), labels: ${model.labels.join(", ")}; ` +
    `${faces}; ONNX Runtime Web ${config.onnxruntime_web}, emotionlab ${config.emotionlab}`;
}

async function start() {
  try {
    const response = await fetch("config.json");
    if (!response.ok) throw new Error(`config.json: ${response.status} ${response.statusText}`);
    config = await response.json();
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain static host lacks
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
    const choice = $("model-choice");
    choice.replaceChildren(...config.models.map(entry => {
      const option = element("option", `${entry.name} (${entry.labels.length} emotions)`);
      option.value = entry.name;
      return option;
    }));
    chooseModel(config.models[0].name);
    // Load the models now (a tiny blank image through both stages), not on the first photo.
    await finish(await run(async () => prepare(V.image(16, 16), "warm-up")));
  } catch (error) {
    $("model").textContent = `could not load the models: ${error.message || error}`;
    document.body.dataset.state = "error";
    return;
  }
  const choice = $("model-choice"), input = $("file"), drop = $("drop");
  choice.disabled = input.disabled = $("camera").disabled = false;
  choice.onchange = () => chooseModel(choice.value);
  input.onchange = () => { const files = Array.from(input.files); input.value = ""; predictFiles(files); };
  drop.ondragover = event => { event.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = event => {
    event.preventDefault();
    drop.classList.remove("over");
    predictFiles(Array.from(event.dataTransfer.files));
  };
  $("camera").onclick = toggleCamera;
  document.body.dataset.state = "ready";
}

// For tests and the curious: the records shown, the camera's counters, one call per image.
window.emotionlab = {
  state,
  timings,
  camera: () => (camera ? { frames: camera.frames, fps: camera.fps, seconds: (performance.now() - camera.started) / 1000, last: camera.last } : null),
  predict: (blob, name) => predictFile(blob, name),
  chooseModel: name => chooseModel(name),
};

document.addEventListener("DOMContentLoaded", start);
