// The classifier's own thread (a Web Worker with its own ONNX Runtime): while it classifies the faces of one
// camera frame, the page already finds the faces of the next, so a frame costs the slower of the two stages
// rather than their sum. Messages: {id, file, inputs (Float32Array, n x 3 x size x size), count, size}
// -> {id, rows (Float32Array, n x classes)} or {id, error}. One run at a time, in the order they come.
"use strict";

importScripts("ort/ort.wasm.min.js");
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL("ort/", self.location.href).href;

const sessions = new Map();
let queue = Promise.resolve();

async function classify({ file, inputs, count, size }) {
  if (!sessions.has(file)) {
    sessions.set(file, await ort.InferenceSession.create(file, { executionProviders: ["wasm"], graphOptimizationLevel: "all" }));
  }
  const session = sessions.get(file);
  const outputs = await session.run({
    [session.inputNames[0]]: new ort.Tensor("float32", inputs, [count, 3, size, size]),
  });
  return outputs[session.outputNames[0]].data;
}

self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      const rows = Float32Array.from(await classify(data));
      self.postMessage({ id: data.id, rows }, [rows.buffer]);
    } catch (error) {
      self.postMessage({ id: data.id, error: String((error && error.message) || error) });
    }
  });
};
