// The labelling page: one image at a time, a key per class, skip, undo. The server holds all state; this
// page only shows it and sends actions naming the image it shows, so a stale tab can never label another.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const photo = $("photo");
  let state = null;
  let busy = false; // true from a key press until the next image is on screen
  let keyMap = {}; // key -> class name
  let buttons = {}; // class name -> button
  let suggestion = null; // the model's suggestion for the current image
  const preloaded = []; // keep references so the browser does not drop preloaded images

  function setBanner(text, kind) {
    const banner = $("banner");
    banner.hidden = !text;
    banner.textContent = text || "";
    banner.className = "banner" + (kind ? " " + kind : "");
  }

  async function api(method, path, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      setBanner("The labelling server is not reachable. Start `emotionlab label` again and reload: nothing saved is lost.");
      throw error;
    }
    const data = await response.json().catch(() => ({}));
    if (response.status === 409) {
      setBanner("This page was out of date and has been refreshed; look again and press the key again.", "info");
      return data;
    }
    if (!response.ok) {
      setBanner(data.detail || `The server answered ${response.status}.`);
      throw new Error(data.detail || String(response.status));
    }
    setBanner("");
    return data;
  }

  function buildButtons(classes) {
    const box = $("buttons");
    box.textContent = "";
    keyMap = {};
    buttons = {};
    for (const cls of classes) {
      const button = document.createElement("button");
      button.type = "button";
      button.tabIndex = -1;
      button.className = "class-button";
      button.dataset.label = cls.name;
      button.title = cls.keys.length ? `${cls.name} (key ${cls.keys.join(" or ")})` : cls.name;
      button.setAttribute("aria-label", button.title);
      button.append(cls.name);
      for (const key of cls.keys) {
        const kbd = document.createElement("kbd");
        kbd.textContent = key;
        button.append(kbd);
        keyMap[key] = cls.name;
      }
      const count = document.createElement("span");
      count.className = "count";
      button.append(count);
      button.addEventListener("click", () => label(cls.name));
      box.append(button);
      buttons[cls.name] = button;
    }
  }

  function describeLast(last) {
    if (!last) return "";
    if (last.action === "label") return `Saved: ${last.image} → ${last.label}`;
    if (last.action === "skip") return `Skipped ${last.image}; it comes back at the end.`;
    if (last.image === null) return "Nothing to undo.";
    const what = last.undid === "skip" ? "skip" : `label ${last.label}`;
    return `Undone: ${what} on ${last.image}. It is shown again.`;
  }

  async function render(next) {
    const first = state === null;
    state = next;
    if (first) {
      buildButtons(state.classes);
      $("folder").textContent = state.folder;
      document.title = `label · ${state.folder.split("/").pop()}`;
    }
    const left = `${state.left} left · ${state.done} done of ${state.total}`;
    const extra = [];
    if (state.skipped) extra.push(`${state.skipped} skipped`);
    if (state.unreadable) extra.push(`${state.unreadable} unreadable not shown`);
    $("counts").textContent = [left, ...extra].join(" · ");
    $("progress-bar").style.width = state.total ? `${(100 * state.done) / state.total}%` : "0";
    for (const cls of state.classes) {
      if (buttons[cls.name]) buttons[cls.name].querySelector(".count").textContent = cls.count;
    }
    $("last").textContent = describeLast(state.last);
    $("undo").disabled = !state.can_undo;
    $("help-model").hidden = !state.has_model;

    const current = state.current;
    document.body.dataset.currentId = current ? current.id : "";
    document.body.dataset.currentName = current ? current.name : "";
    $("done").hidden = current !== null;
    photo.hidden = current === null;
    $("skip").disabled = current === null;
    for (const button of Object.values(buttons)) button.disabled = current === null;
    $("name").textContent = current ? current.name : "";
    $("skipped-tag").hidden = !(current && current.skipped);
    if (!current) {
      $("apply-command").textContent = `emotionlab label "${state.folder}" --journal "${state.journal}" --apply DEST`;
    } else if (photo.dataset.id !== String(current.id) || photo.getAttribute("src") !== current.url) {
      photo.dataset.id = current.id;
      photo.src = current.url;
      try {
        await photo.decode();
      } catch (error) {
        setBanner(`${current.name} cannot be shown (changed on disk?); press Space to skip it.`, "info");
      }
    }
    if (state.next) {
      const image = new Image();
      image.src = state.next.url;
      preloaded.push(image);
      if (preloaded.length > 4) preloaded.shift();
    }
    showSuggestion();
  }

  async function showSuggestion() {
    suggestion = null;
    const box = $("suggestion");
    for (const button of Object.values(buttons)) button.classList.remove("suggested");
    if (!state.has_model || !state.current) {
      box.hidden = true;
      return;
    }
    const id = state.current.id;
    box.hidden = false;
    box.textContent = "Model: thinking…";
    let data;
    try {
      data = await (await fetch(`/api/suggestion/${id}`)).json();
    } catch (error) {
      box.textContent = "Model: no answer.";
      return;
    }
    if (!state.current || state.current.id !== id) return; // the user moved on meanwhile
    if (state.next) fetch(`/api/suggestion/${state.next.id}`).catch(() => {}); // warm the server's cache
    if (!data.label) {
      box.textContent = `Model: ${data.error || "no suggestion"}`;
      return;
    }
    const confidence = data.confidence === null ? "" : ` (${Math.round(100 * data.confidence)}%)`;
    box.textContent = "";
    // Reviewing suspects: the dataset's own label first, so confirming it is one key.
    if (state.current.given) box.append(`Filed as ${state.current.given}; `);
    box.append(data.round ? `Model (refitted on your labels, round ${data.round}) suggests ` : "Model suggests ");
    const strong = document.createElement("strong");
    strong.textContent = data.label + confidence;
    box.append(strong);
    if (data.no_face) box.append(" (no face found: judged on the whole image)");
    if (data.in_classes) {
      suggestion = data;
      buttons[data.label].classList.add("suggested");
      box.append(" — press Enter to accept");
    } else {
      box.append(" (not one of the classes)");
    }
  }

  async function run(action) {
    if (busy) return; // a key pressed before the next image is on screen would label an unseen image
    busy = true;
    document.body.dataset.ready = "0";
    try {
      await render(await action());
    } catch (error) {
      console.error(error);
    } finally {
      busy = false;
      document.body.dataset.ready = "1";
    }
  }

  function flash(name) {
    const button = buttons[name];
    if (!button) return;
    button.classList.add("flash");
    setTimeout(() => button.classList.remove("flash"), 150);
  }

  function label(name) {
    if (!state || !state.current || busy) return;
    flash(name);
    const id = state.current.id;
    run(() => api("POST", "/api/label", { id, label: name }));
  }

  function skip() {
    if (!state || !state.current) return;
    const id = state.current.id;
    run(() => api("POST", "/api/skip", { id }));
  }

  function undo() {
    run(() => api("POST", "/api/undo"));
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (event.ctrlKey) {
      if (key === "z") {
        event.preventDefault();
        if (!event.repeat) undo();
      }
      return;
    }
    let act = null;
    if (key in keyMap) act = () => label(keyMap[key]);
    else if (key === " " || key === "Spacebar") act = skip;
    else if (key === "z" || key === "Backspace") act = undo;
    else if (key === "Enter" && suggestion) act = () => label(suggestion.label);
    if (!act) return;
    event.preventDefault(); // Space must not scroll, Backspace must not navigate
    if (!event.repeat) act(); // holding a key down labels one image, not a run of them
  });

  // Buttons never take the focus, so Space and Enter always mean skip and accept, not "press that button".
  for (const button of document.querySelectorAll("button")) {
    button.addEventListener("mousedown", (event) => event.preventDefault());
  }
  $("buttons").addEventListener("mousedown", (event) => event.preventDefault());
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  window.addEventListener("focus", () => document.body.focus());
  document.body.focus();

  run(() => api("GET", "/api/state"));
})();
