// The faces of a record drawn as the service page (predict.js) and the in-browser page (web/static/local.js)
// both show them: each face's box in its emotion's colour, numbered as the rows of its table. Loaded before
// either page's script; `emotionlab export --web` copies it beside local.js.
"use strict";

// Okabe-Ito colours (told apart with the common colour-vision deficiencies), one per emotion the project knows.
const COLOURS = {
  angry: "#d55e00", disgusted: "#009e73", fearful: "#cc79a7", happy: "#f0e442",
  neutral: "#bbbbbb", sad: "#0072b2", surprised: "#e69f00", contempt: "#56b4e9",
};
// For a model with other class names: given in the order of its labels.
const SPARE = ["#882255", "#44aa99", "#999933", "#332288", "#117733", "#aa4499", "#88ccee", "#ddcc77"];
const colours = new Map();

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
  document.getElementById("legend").replaceChildren(...labels.map(label => {
    const item = element("li");
    item.dataset.label = label;
    item.append(swatch(label), label);
    return item;
  }));
}

function drawBoxes(layer, faces, width, height) {
  layer.replaceChildren(...faces.map((face, index) => {
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
    return box;
  }));
}

function fillTable(table, record) {  // a row a face, or one for the whole image when no face was found
  const labels = Object.keys(record.probabilities);
  const head = element("tr");
  head.append(element("th", "face"), element("th", "emotion"), ...labels.map(label => element("th", label)));
  table.tHead.replaceChildren(head);
  const rows = record.no_face ? [{ ...record, whole: true }] : record.faces;
  table.tBodies[0].replaceChildren(...rows.map((face, index) => {
    const row = element("tr");
    row.dataset.face = face.whole ? "" : String(index + 1);
    row.dataset.label = face.label;
    const number = element("td");
    number.append(swatch(face.label), face.whole ? "whole image" : String(index + 1));
    const compound = face.compound ? ` (${face.compound.text})` : "";
    row.append(number, element("td", `${face.label} ${percent(face.confidence)}${compound}`));
    for (const label of labels) {
      row.append(element("td", percent(face.probabilities[label], 1), label === face.label ? "best" : ""));
    }
    return row;
  }));
}
