// The Python path's image work, ported so the page gives the same boxes and probabilities as `emotionlab predict`:
// BlazeFace's letterbox, anchors, decoding and weighted non-maximum suppression (faces/blaze.py), the square
// crop with edge pixels repeated (faces/crop.py), and the classifier's eval transform (inference/classifier.py:
// Pillow's bilinear resize, grey, scale, normalisation). Pure functions on RGB byte arrays (3 bytes a pixel),
// no DOM, no ONNX Runtime. Every resize is Pillow's, rounding included: a pixel one grey level off moves the
// classifier's probabilities, and a box one pixel off moves the crop.
"use strict";

(function (root) {
  const fround = Math.fround;

  // Python's round(): halves go to the even neighbour.
  function roundHalfEven(value) {
    const floor = Math.floor(value);
    const diff = value - floor;
    if (diff > 0.5) return floor + 1;
    if (diff < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  function image(width, height, data) {
    return { width, height, data: data || new Uint8Array(width * height * 3) };
  }

  // ---- Pillow's Image.resize (ImagingResample, 8 bits a channel): BOX and BILINEAR ---------------------------

  const FILTERS = {
    box: { support: 0.5, weight: x => (x > -0.5 && x <= 0.5 ? 1 : 0) },
    bilinear: { support: 1, weight: x => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
  };

  const tables = new Map();  // camera frames all have one size: their tables are computed once

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel the first source pixel, the
  // number of source pixels and their weights in 22-bit fixed point (rounded away from zero).
  function resampleTable(sourceSize, targetSize, filterName) {
    const key = `${sourceSize} ${targetSize} ${filterName}`;
    if (tables.has(key)) return tables.get(key);
    const filter = FILTERS[filterName];
    const scale = sourceSize / targetSize;
    const filterScale = Math.max(scale, 1);
    const support = filter.support * filterScale, inverse = 1 / filterScale;
    const span = Math.ceil(support) * 2 + 1;
    const starts = new Int32Array(targetSize), counts = new Int32Array(targetSize);
    const weights = new Float64Array(targetSize * span);
    for (let d = 0; d < targetSize; d++) {
      const centre = (d + 0.5) * scale;
      const start = Math.max(Math.trunc(centre - support + 0.5), 0);
      const count = Math.min(Math.trunc(centre + support + 0.5), sourceSize) - start;
      let total = 0;
      for (let j = 0; j < count; j++) {
        const weight = filter.weight((j + start - centre + 0.5) * inverse);
        weights[d * span + j] = weight;
        total += weight;
      }
      for (let j = 0; j < count; j++) {
        const value = (total !== 0 ? weights[d * span + j] / total : weights[d * span + j]) * 2 ** 22;
        weights[d * span + j] = value < 0 ? Math.trunc(-0.5 + value) : Math.trunc(0.5 + value);
      }
      starts[d] = start;
      counts[d] = count;
    }
    if (tables.size > 64) tables.clear();
    const table = { starts, counts, weights, span };
    tables.set(key, table);
    return table;
  }

  const HALF = 2 ** 21, UNIT = 2 ** 22;
  const toByte = total => Math.min(255, Math.max(0, Math.floor(total / UNIT)));

  function resampleHorizontal(source, width) {
    const target = image(width, source.height);
    const { starts, counts, weights, span } = resampleTable(source.width, width, source.filter);
    const from = source.data, to = target.data;
    for (let y = 0; y < source.height; y++) {
      const row = y * source.width * 3;
      for (let x = 0; x < width; x++) {
        let r = HALF, g = HALF, b = HALF;
        let p = row + starts[x] * 3;
        const first = x * span, last = first + counts[x];
        for (let k = first; k < last; k++, p += 3) {
          const weight = weights[k];
          r += from[p] * weight; g += from[p + 1] * weight; b += from[p + 2] * weight;
        }
        const o = (y * width + x) * 3;
        to[o] = toByte(r); to[o + 1] = toByte(g); to[o + 2] = toByte(b);
      }
    }
    return target;
  }

  function resampleVertical(source, height) {
    const target = image(source.width, height);
    const { starts, counts, weights, span } = resampleTable(source.height, height, source.filter);
    const from = source.data, to = target.data, length = source.width * 3;
    const sums = new Float64Array(length);
    for (let y = 0; y < height; y++) {
      sums.fill(HALF);
      for (let j = 0; j < counts[y]; j++) {
        const weight = weights[y * span + j], row = (starts[y] + j) * length;
        for (let i = 0; i < length; i++) sums[i] += from[row + i] * weight;
      }
      const out = y * length;
      for (let i = 0; i < length; i++) to[out + i] = toByte(sums[i]);
    }
    return target;
  }

  // Image.resize((width, height), BOX or BILINEAR): the horizontal pass, then the vertical one.
  function resize(source, width, height, filterName) {
    if (width === source.width && height === source.height) return source;
    let result = { ...source, filter: filterName };
    if (width !== source.width) result = { ...resampleHorizontal(result, width), filter: filterName };
    if (height !== source.height) result = resampleVertical(result, height);
    return result;
  }

  // ---- the classifier's input: inference/classifier.py EvalTransform ----------------------------------------

  // One face (RGB image) -> Float32Array 3 x size x size, written at ``offset`` of ``out``.
  function modelInput(face, model, out, offset) {
    const size = model.input_size, area = size * size;
    const resized = resize(face, size, size, "bilinear");
    const values = new Float32Array(3 * area);
    for (let p = 0; p < area; p++) {
      const r = resized.data[p * 3], g = resized.data[p * 3 + 1], b = resized.data[p * 3 + 2];
      if (model.grayscale) {
        // torchvision's weights, summed in float64, rounded to float32, truncated to a grey level.
        const level = fround(Math.trunc(fround(r * 0.2989 + g * 0.587 + b * 0.114)) / 255);
        values[p] = level; values[area + p] = level; values[2 * area + p] = level;
      } else {
        values[p] = fround(r / 255); values[area + p] = fround(g / 255); values[2 * area + p] = fround(b / 255);
      }
    }
    const normalization = model.normalization;
    if (normalization.type === "per_image") {
      // Zero mean, unit (sample) standard deviation, floored at 1/sqrt(n), as in training.
      let sum = 0;
      for (const value of values) sum += value;
      const mean = sum / values.length;
      let squares = 0;
      for (const value of values) squares += (value - mean) ** 2;
      const std = Math.max(Math.sqrt(squares / (values.length - 1)), 1 / Math.sqrt(values.length));
      for (let i = 0; i < values.length; i++) out[offset + i] = (values[i] - mean) / std;
    } else {
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < area; p++) {
          out[offset + c * area + p] = (values[c * area + p] - normalization.mean[c]) / normalization.std[c];
        }
      }
    }
  }

  // ---- faces/crop.py crop_face (no alignment) -----------------------------------------------------------

  function cropFace(source, box, margin) {
    const side = Math.max(1, roundHalfEven((1 + 2 * margin) * Math.max(box.w, box.h)));
    const centreX = box.x + box.w / 2, centreY = box.y + box.h / 2;
    const left = Math.floor(centreX - side / 2 + 0.5), top = Math.floor(centreY - side / 2 + 0.5);
    // np.pad(mode="edge") of the part inside the image: every outside pixel repeats the nearest inside one.
    const x0 = Math.max(left, 0), x1 = Math.min(left + side, source.width) - 1;
    const y0 = Math.max(top, 0), y1 = Math.min(top + side, source.height) - 1;
    const crop = image(side, side);
    for (let y = 0; y < side; y++) {
      const sy = Math.min(Math.max(top + y, y0), y1);
      for (let x = 0; x < side; x++) {
        const sx = Math.min(Math.max(left + x, x0), x1);
        const from = (sy * source.width + sx) * 3, to = (y * side + x) * 3;
        crop.data[to] = source.data[from]; crop.data[to + 1] = source.data[from + 1]; crop.data[to + 2] = source.data[from + 2];
      }
    }
    return crop;
  }

  const canCrop = (box, width, height) =>
    box.w > 0 && box.h > 0 && box.x < width && box.y < height && box.x + box.w > 0 && box.y + box.h > 0;

  // ---- BlazeFace: faces/blaze.py -------------------------------------------------------------------------

  function anchors(model) {  // ssd_anchors(): centres in [0, 1], x then y, in the model's output order
    const centres = [];
    const strides = model.strides;
    for (let layer = 0; layer < strides.length;) {
      let same = layer;
      while (same < strides.length && strides[same] === strides[layer]) same++;
      const cells = Math.floor(model.input_size / strides[layer]);
      const repeat = model.anchors_per_layer * (same - layer);
      for (let y = 0; y < cells; y++) {
        for (let x = 0; x < cells; x++) {
          const cx = fround((x + 0.5) / cells), cy = fround((y + 0.5) / cells);
          for (let k = 0; k < repeat; k++) centres.push(cx, cy);
        }
      }
      layer = same;
    }
    return Float32Array.from(centres);
  }

  // letterbox(): the image scaled into the model's square (Pillow: BOX down, BILINEAR up), centred on black,
  // as 1 x 3 x S x S in [-1, 1].
  function letterbox(source, size) {
    const scale = size / Math.max(source.width, source.height);
    const width = Math.min(size, Math.max(1, roundHalfEven(source.width * scale)));
    const height = Math.min(size, Math.max(1, roundHalfEven(source.height * scale)));
    const resized = resize(source, width, height, scale < 1 ? "box" : "bilinear");
    const left = Math.floor((size - width) / 2), top = Math.floor((size - height) / 2);
    const tensor = new Float32Array(3 * size * size).fill(-1);
    const step = fround(2 / 255), area = size * size;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const from = (y * width + x) * 3, to = (top + y) * size + left + x;
        for (let c = 0; c < 3; c++) tensor[c * area + to] = fround(fround(resized.data[from + c] * step) - 1);
      }
    }
    return { tensor, scaleX: width / source.width, scaleY: height / source.height, left, top };
  }

  function iou(a, b) {
    const width = Math.max(Math.min(a[2], b[2]) - Math.max(a[0], b[0]), 0);
    const height = Math.max(Math.min(a[3], b[3]) - Math.max(a[1], b[1]), 0);
    const inter = width * height;
    const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]);
    return union > 0 ? inter / union : 0;
  }

  // decode() then weighted_nms(): detections (16 numbers: box x1 y1 x2 y2, six keypoints) with their scores.
  function decodeDetections(regressors, logits, centres, model, settings) {
    const size = model.input_size, found = [];
    const limit = settings.raw_score_limit;
    for (let a = 0; a < logits.length; a++) {
      const score = fround(1 / (1 + Math.exp(-Math.min(Math.max(logits[a], -limit), limit))));
      if (!(score > settings.score_threshold)) continue;
      const raw = regressors.subarray(a * 16, a * 16 + 16);
      const ax = fround(centres[a * 2] * size), ay = fround(centres[a * 2 + 1] * size);
      const cx = fround(raw[0] + ax), cy = fround(raw[1] + ay);
      const halfW = fround(raw[2] / 2), halfH = fround(raw[3] / 2);
      const row = [fround(cx - halfW), fround(cy - halfH), fround(cx + halfW), fround(cy + halfH)];
      for (let k = 0; k < 6; k++) row.push(fround(raw[4 + 2 * k] + ax), fround(raw[5 + 2 * k] + ay));
      if (row[2] > row[0] && row[3] > row[1]) found.push({ row, score });
    }
    // Best score first (stable); every detection overlapping the best is merged into it, score-weighted.
    let order = found.map((item, index) => [item, index]).sort((p, q) => q[0].score - p[0].score || p[1] - q[1]);
    order = order.map(([item]) => item);
    const kept = [];
    while (order.length) {
      const best = order[0];
      const overlapping = order.filter((item, i) => i === 0 || iou(best.row, item.row) > settings.iou_threshold);
      const weightSum = overlapping.reduce((total, item) => total + item.score, 0);
      const merged = best.row.map((_, k) => overlapping.reduce((total, item) => total + item.row[k] * item.score, 0) / weightSum);
      kept.push({ row: merged, score: best.score });
      order = order.filter((item, i) => !(i === 0 || iou(best.row, item.row) > settings.iou_threshold));
    }
    return kept;
  }

  // _box_from_scaled(): integer box in image pixels, or null for a degenerate one.
  function toBox(detection, letter, detector) {
    const point = k => [(detection.row[2 * k] - letter.left) / letter.scaleX, (detection.row[2 * k + 1] - letter.top) / letter.scaleY];
    const [x1, y1] = point(0), [x2, y2] = point(1);
    const w = x2 - x1, h = y2 - y1;
    if (![x1, y1, w, h, detection.score].every(Number.isFinite) || w <= 0 || h <= 0) return null;
    return {
      x: roundHalfEven(x1), y: roundHalfEven(y1), w: Math.max(1, roundHalfEven(w)), h: Math.max(1, roundHalfEven(h)),
      score: detection.score, detector,
    };
  }

  function sortedBoxes(boxes, width, height) {  // _sorted_boxes(): largest first, inside the image
    return boxes
      .filter(box => box && box.x < width && box.y < height && box.x + box.w > 0 && box.y + box.h > 0)
      .map((box, index) => [box, index])
      .sort((p, q) => q[0].w * q[0].h - p[0].w * p[0].h || q[0].score - p[0].score || p[1] - q[1])
      .map(([box]) => box);
  }

  function newFace(box, found, overlap) {  // _new_face()
    for (const other of found) {
      const width = Math.min(box.x + box.w, other.x + other.w) - Math.max(box.x, other.x);
      const height = Math.min(box.y + box.h, other.y + other.h) - Math.max(box.y, other.y);
      const inter = Math.max(0, width) * Math.max(0, height);
      if (inter / (box.w * box.h + other.w * other.h - inter) > overlap) return false;
    }
    return true;
  }

  function looksLikeAScene(found, source, settings) {  // _looks_like_a_scene()
    const shorter = Math.min(source.width, source.height);
    if (shorter < settings.scene_min_side) return false;
    return !found.length || Math.max(...found.map(box => Math.max(box.w, box.h))) < settings.scene_fraction * shorter;
  }

  const api = {
    roundHalfEven, image, resize, modelInput, cropFace, canCrop,
    anchors, letterbox, decodeDetections, toBox, sortedBoxes, newFace, looksLikeAScene,
  };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.EmotionVision = api;
})(typeof globalThis === "object" ? globalThis : this);
