// The rtseg page: an image, a video job or the webcam at a time, against the endpoints of rtseg/web/app.py.
// Rules: every download link belongs to the result on screen (cleared when a run starts, is cancelled or fails);
// a file is checked in the browser (size, preview) before anything is uploaded; user text is only ever set as
// textContent; messages use the page's own labels, not the API's parameter names.
"use strict";

const $ = (id) => document.getElementById(id);
const VIDEO_KEY = "rtseg.video"; // sessionStorage: this tab's video job, so that a reload shows it again
const ACTIVE = ["queued", "running"];
const state = {
  info: null,
  classes: [], // the chosen class names, in the order chosen; none = every class
  image: { file: null, ok: false, running: false, id: null, stem: "image", name: "", request: 0 },
  video: { file: null, ok: false, job: null, uploading: false },
  webcam: null,
  editors: {}, // the RegionEditor of each tab
  uploads: 0, // uploads in flight: leaving the page now would lose them, so the browser asks first
};

function show(element, visible) { element.hidden = !visible; }

function setError(element, message) {
  element.textContent = message || "";
  show(element, Boolean(message));
}

function plural(count, one, many = `${one}s`) { return `${count} ${count === 1 ? one : many}`; }

function sizeText(bytes) {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(bytes >= 10 * 2 ** 20 ? 0 : 1)} MB`
    : bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : plural(bytes, "byte");
}

// Focus moves only when it sat on a control that is going away (disabled or hidden), or nowhere.
function moveFocus(from, to) {
  const here = document.activeElement;
  if (here === from || here === document.body || here === null) to.focus();
}

// -- the server's messages, in the page's words -------------------------------------------------------

const LABELS = { max_side: "Max size", score: "Score threshold", classes: "Classes", name: "File name" };
const PHRASES = [
  [/Input should be greater than or equal to (\S+)/, "must be $1 or more"],
  [/Input should be less than or equal to (\S+)/, "must be $1 or less"],
  [/Input should be a valid (integer|number).*/, "must be a number"],
];

function ownWords(text) {
  let words = text.replace(/^(\w+): /, (whole, name) => (LABELS[name] ? `${LABELS[name]}: ` : whole));
  for (const [pattern, phrase] of PHRASES) words = words.replace(pattern, phrase);
  return words;
}

async function problem(response) {
  let text = `the server answered ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") text = ownWords(body.detail);
  } catch (ignored) { /* not JSON: keep the status line */ }
  if (response.status === 503) setError($("busy"), text);
  return text;
}

function tooLarge(file) {
  const limit = state.info.max_upload_bytes;
  return file.size > limit ? `${file.name} is ${sizeText(file.size)}, above the upload limit of ${sizeText(limit)}` : null;
}

async function upload(url, file) {
  setError($("busy"), null);
  const response = await fetch(url, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}

// Hides a block of download links and takes their addresses away, so no stale result can be downloaded.
function clearLinks(container) {
  for (const link of container.querySelectorAll("a")) link.removeAttribute("href");
  show(container, false);
}

function setLink(id, href, filename) {
  $(id).href = href;
  $(id).download = filename;
}

function filterQuery() {
  return `score=${encodeURIComponent($("score").value)}&classes=${encodeURIComponent(state.classes.join(","))}`;
}

function scoreText() { return Number($("score").value).toFixed(2); }

// -- settings: the score and the class picker -----------------------------------------------------------

async function loadInfo() {
  const response = await fetch("/api/info");
  if (!response.ok) throw new Error(await problem(response));
  state.info = await response.json();
  state.classes = state.info.default_classes.filter((name) => state.info.classes.includes(name));
  $("score").min = state.info.min_score;
  $("score").value = state.info.score_threshold;
  $("max-side").value = state.info.max_side;
  $("max-side").max = state.info.max_side_limit;
  for (const limit of document.querySelectorAll(".limit")) limit.textContent = sizeText(state.info.max_upload_bytes);
  showScore();
  renderClasses();
}

function showScore() { $("score-value").textContent = scoreText(); }

let refilterTimer = null;
function settingsChanged() {
  showScore();
  clearTimeout(refilterTimer);
  refilterTimer = setTimeout(() => { refreshImage(); sendWebcamSettings(); }, 60);
}

const picker = { active: -1, shown: [] }; // the list's highlighted option and the names it lists now

function renderClasses() {
  const chips = state.classes.map((name) => {
    const chip = document.createElement("li");
    chip.className = "chip";
    const label = document.createElement("span");
    label.textContent = name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${name}`);
    remove.addEventListener("click", () => {
      toggleClass(name);
      $("class-search").focus();
    });
    chip.append(label, remove);
    return chip;
  });
  $("class-chips").replaceChildren(...chips);
  const total = state.info.classes.length;
  $("class-shown").textContent = state.classes.length === 0 ? `All classes are shown (${total}).`
    : `Shown: ${state.classes.join(", ")} (${state.classes.length} of ${total} classes).`;
  show($("classes-all"), state.classes.length > 0);
  renderClassList();
}

function renderClassList() {
  const query = $("class-search").value.trim().toLowerCase();
  picker.shown = state.info.classes.filter((name) => name.toLowerCase().includes(query));
  picker.active = Math.min(picker.active, picker.shown.length - 1);
  const options = picker.shown.map((name, index) => {
    const option = document.createElement("li");
    option.id = `class-option-${index}`;
    option.setAttribute("role", "option");
    option.setAttribute("aria-selected", String(state.classes.includes(name)));
    option.textContent = name;
    option.dataset.name = name;
    if (index === picker.active) option.classList.add("active");
    return option;
  });
  if (options.length === 0) {
    const none = document.createElement("li");
    none.className = "empty";
    none.setAttribute("role", "presentation");
    none.textContent = "no class matches";
    options.push(none);
  }
  $("class-list").replaceChildren(...options);
  const search = $("class-search");
  if (picker.active >= 0) {
    search.setAttribute("aria-activedescendant", `class-option-${picker.active}`);
    $(`class-option-${picker.active}`).scrollIntoView({ block: "nearest" });
  } else {
    search.removeAttribute("aria-activedescendant");
  }
}

function openClassList(open) {
  show($("class-list"), open);
  $("class-search").setAttribute("aria-expanded", String(open));
  if (!open) { picker.active = -1; $("class-search").removeAttribute("aria-activedescendant"); }
}

function toggleClass(name) {
  const at = state.classes.indexOf(name);
  if (at >= 0) state.classes.splice(at, 1); else state.classes.push(name);
  renderClasses();
  settingsChanged();
}

function pickerKey(event) {
  const open = !$("class-list").hidden;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    if (!open) openClassList(true);
    const step = event.key === "ArrowDown" ? 1 : -1;
    picker.active = Math.max(0, Math.min(picker.shown.length - 1, picker.active + step));
    renderClassList();
  } else if (event.key === "Enter" && open && picker.active >= 0) {
    event.preventDefault();
    chooseFromSearch(picker.shown[picker.active]);
  } else if (event.key === "Escape" && open) {
    event.preventDefault();
    openClassList(false);
  } else if (event.key === "Backspace" && $("class-search").value === "" && state.classes.length) {
    toggleClass(state.classes[state.classes.length - 1]);
  }
}

// After a typed search, choosing clears the search so that the next class can be typed at once.
function chooseFromSearch(name) {
  if ($("class-search").value) {
    $("class-search").value = "";
    picker.active = 0;
  }
  toggleClass(name);
}

function wirePicker() {
  const search = $("class-search");
  search.addEventListener("click", () => openClassList(true));
  search.addEventListener("blur", () => openClassList(false));
  search.addEventListener("input", () => { picker.active = 0; openClassList(true); renderClassList(); });
  search.addEventListener("keydown", pickerKey);
  const list = $("class-list");
  list.addEventListener("mousedown", (event) => event.preventDefault()); // the search box keeps the focus
  list.addEventListener("click", (event) => {
    const option = event.target.closest("[role=option]");
    if (option) chooseFromSearch(option.dataset.name);
  });
  $("classes-all").addEventListener("click", () => {
    state.classes = [];
    renderClasses();
    settingsChanged();
    $("class-search").focus();
  });
}

// -- tabs --------------------------------------------------------------------------------------------

const TABS = ["image", "video", "webcam"];

function selectTab(name, focus = false) {
  for (const other of TABS) {
    const tab = $(`tab-${other}`);
    const selected = other === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    show($(`${other}-panel`), selected);
  }
  if (focus) $(`tab-${name}`).focus();
}

function wireTabs() {
  TABS.forEach((name, index) => {
    const tab = $(`tab-${name}`);
    tab.addEventListener("click", () => selectTab(name));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], true);
    });
  });
}

// -- drop zones: drag and drop, paste, or the file button -------------------------------------------------

function wireDropZones() {
  const choosers = { image: chooseImage, video: chooseVideo };
  for (const kind of ["image", "video"]) {
    const zone = $(`${kind}-drop`);
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (file) choosers[kind](file);
    });
    $(`${kind}-file`).addEventListener("change", (event) => {
      if (event.target.files[0]) choosers[kind](event.target.files[0]);
    });
  }
  // A file dropped beside a zone would make the browser leave the page for it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = event.clipboardData && event.clipboardData.files[0];
    if (!file) return; // text pastes into the search box as usual
    event.preventDefault();
    const kind = file.type.startsWith("video/") ? "video"
      : file.type.startsWith("image/") || $("video-panel").hidden ? "image" : "video";
    selectTab(kind);
    choosers[kind](file);
  });
}

function describeChosen(element, file, extra = "") {
  element.textContent = `${file.name} · ${sizeText(file.size)}${extra}`;
}

// Takes a file for the image or video panel: names it, and starts the browser's preview, which judges it before
// any upload (the preview's load or error event enables Run or says why not).
function choose(kind, file, stage, updateRun) {
  const chosen = state[kind];
  chosen.file = file;
  chosen.ok = false;
  setError($(`${kind}-error`), null);
  describeChosen($(`${kind}-chosen`), file);
  const preview = $(`${kind}-preview`);
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  show(stage, false);
  updateRun();
  const large = tooLarge(file);
  if (large) { setError($(`${kind}-error`), large); return; }
  preview.src = URL.createObjectURL(file);
}

// -- zones and lines: drawn over a preview ----------------------------------------------------------------
// Each tab has a RegionEditor: an SVG over its picture (the image preview, the video's first frame, the camera)
// where clicks or taps (pointer events) add points, and a list of what was drawn with names, a flip for a line's
// "in" side and delete buttons. Points are kept as fractions (0..1) of the picture. The regions go to the server
// once (POST /api/regions, checked there) and runs name them by the id it answers.

const ZONE_COLORS = [[255, 196, 0], [0, 200, 255], [255, 64, 160], [120, 255, 80], [200, 120, 255], [255, 120, 40]];
const IN_COLOR = "rgb(60, 220, 90)"; // rtseg.render.scene: the arrow to a line's "in" side
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const SVG = "http://www.w3.org/2000/svg";
const CLOSE_PX = 12; // a click this near the first corner closes a zone
const DOUBLE_MS = 400; // a second click this soon, this near the last point, finishes the drawing
const DOUBLE_PX = 8;

function zoneColor(index) { return `rgb(${ZONE_COLORS[index % ZONE_COLORS.length].join(", ")})`; }

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function button(text, options = {}) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.className = options.className || "secondary";
  if (options.label) element.setAttribute("aria-label", options.label);
  if (options.id) element.id = options.id;
  return element;
}

class RegionEditor {
  // tab: "image" | "video" | "webcam"; media: the picture drawn over; lines: whether lines may be drawn here
  constructor(tab, media, { lines, onChange, waiting }) {
    Object.assign(this, { tab, media, lines, onChange, waiting });
    this.regions = []; // {kind: "zone"|"line", name, points: [[x, y], ...] in 0..1, in: "left"|"right"}
    this.mode = null; // "zone" or "line" while drawing
    this.draft = [];
    this.selected = -1;
    this.last = null; // the last point added: {time, x, y} in CSS pixels, to tell a double click
    this.buildTools($(`${tab}-regions`));
    this.svg = svgElement("svg", { class: "overlay", tabindex: "0", role: "application", id: `${tab}-overlay`,
                                   "aria-label": `drawing area over the ${tab === "webcam" ? "camera picture" : tab}`,
                                   "aria-describedby": `${tab}-draw-help` });
    media.parentElement.append(this.svg);
    this.svg.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.svg.addEventListener("keydown", (event) => this.key(event, true));
    this.tools.addEventListener("keydown", (event) => this.key(event, false));
    new ResizeObserver(() => this.update()).observe(media); // shown, hidden, resized: the overlay follows
    for (const ready of ["load", "loadeddata", "loadedmetadata", "resize"]) media.addEventListener(ready, () => this.update());
    this.update();
  }

  buildTools(container) {
    const kinds = this.lines ? "Zones and lines" : "Zones";
    const title = document.createElement("h3");
    title.id = `${this.tab}-regions-title`;
    title.textContent = kinds;
    container.setAttribute("role", "group");
    container.setAttribute("aria-labelledby", title.id);
    const tools = document.createElement("div");
    tools.className = "controls";
    this.drawZone = button("Draw zone", { id: `${this.tab}-draw-zone` });
    this.drawLine = this.lines ? button("Draw line", { id: `${this.tab}-draw-line` }) : null;
    this.finishButton = button("Finish", { id: `${this.tab}-finish`, className: "" });
    this.cancelButton = button("Cancel drawing", { id: `${this.tab}-cancel-drawing` });
    for (const [control, kind] of [[this.drawZone, "zone"], [this.drawLine, "line"]]) {
      if (!control) continue;
      control.setAttribute("aria-pressed", "false");
      control.addEventListener("click", () => (this.mode === kind ? this.cancel() : this.start(kind)));
      tools.append(control);
    }
    this.finishButton.addEventListener("click", () => this.finish());
    this.cancelButton.addEventListener("click", () => this.cancel());
    tools.append(this.finishButton, this.cancelButton);
    this.help = document.createElement("p");
    this.help.id = `${this.tab}-draw-help`;
    this.help.className = "help";
    this.help.setAttribute("role", "status");
    this.error = document.createElement("p");
    this.error.id = `${this.tab}-regions-error`;
    this.error.className = "error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.list = document.createElement("ul");
    this.list.className = "region-list";
    this.list.id = `${this.tab}-region-list`;
    this.list.setAttribute("aria-label", `${kinds.toLowerCase()} drawn`);
    this.list.addEventListener("focusin", (event) => {
      const item = event.target.closest("li");
      if (item) this.select(Number(item.dataset.index));
    });
    container.append(title, tools, this.help, this.error, this.list);
    this.tools = container;
  }

  // -- what the server is sent ---------------------------------------------------------------------------

  payload() {
    const zones = [], lines = [];
    for (const region of this.regions) {
      if (region.kind === "zone") zones.push({ name: region.name, points: region.points });
      else lines.push({ name: region.name, points: region.points, in: region.in });
    }
    return { zones, lines };
  }

  // The id of the regions on the server ("" when none is drawn); a problem is shown here and thrown.
  async sync() {
    if (this.regions.length === 0) { setError(this.error, null); return ""; }
    const response = await fetch("/api/regions", { method: "POST", body: JSON.stringify(this.payload()),
                                                    headers: { "Content-Type": "application/json" } });
    if (!response.ok) {
      const message = `${this.lines ? "Zones and lines" : "Zones"}: ${await problem(response)}`;
      setError(this.error, message);
      throw new Error(message);
    }
    setError(this.error, null);
    return (await response.json()).id;
  }

  changed() {
    this.renderList();
    this.render();
    this.onChange();
  }

  // -- drawing ---------------------------------------------------------------------------------------------

  ready() { return !this.media.hidden && this.media.offsetParent !== null && this.box() !== null; }

  start(kind) {
    if (this.regions.length >= state.info.max_regions) {
      this.say(`At most ${state.info.max_regions} zones and lines: delete one to draw another.`);
      return;
    }
    this.mode = kind;
    this.draft = [];
    this.last = null;
    this.select(-1);
    this.update();
    if (document.activeElement === document.body) this.svg.focus();
  }

  cancel() {
    if (!this.mode) return;
    this.mode = null;
    this.draft = [];
    this.update();
    this.say("Drawing cancelled.");
  }

  least() { return this.mode === "zone" ? 3 : 2; }

  finish() {
    if (!this.mode || this.draft.length < this.least()) return;
    const kind = this.mode;
    let number = 1;
    while (this.regions.some((r) => r.name === `${kind}-${number}`)) number += 1;
    this.regions.push({ kind, name: `${kind}-${number}`, points: this.draft, in: "left" });
    this.mode = null;
    this.draft = [];
    this.selected = this.regions.length - 1;
    this.update();
    this.say(`${kind === "zone" ? "Zone" : "Line"} ${kind}-${number} added.`);
    this.changed();
  }

  pointerDown(event) {
    this.svg.focus();
    if (!this.mode) {
      const target = event.target.closest("[data-index]");
      this.select(target ? Number(target.dataset.index) : -1);
      return;
    }
    event.preventDefault();
    const box = this.box();
    if (!box) return;
    const x = Math.min(Math.max(event.clientX - box.left, 0), box.width);
    const y = Math.min(Math.max(event.clientY - box.top, 0), box.height);
    const near = (point, px) => Math.hypot(point[0] * box.width - x, point[1] * box.height - y) <= px;
    const now = performance.now();
    const double = this.last && now - this.last.time < DOUBLE_MS && Math.hypot(this.last.x - x, this.last.y - y) <= DOUBLE_PX;
    if (double || (this.mode === "zone" && this.draft.length >= 3 && near(this.draft[0], CLOSE_PX))) {
      this.last = null;
      this.finish();
      return;
    }
    this.last = { time: now, x, y };
    const point = [Number((x / box.width).toFixed(4)), Number((y / box.height).toFixed(4))];
    const previous = this.draft[this.draft.length - 1];
    if (previous && previous[0] === point[0] && previous[1] === point[1]) return;
    this.draft.push(point);
    if (this.draft.length >= state.info.max_points) { this.finish(); return; }
    this.update();
  }

  key(event, onOverlay) {
    const typing = event.target.tagName === "INPUT";
    if (event.key === "Escape" && this.mode) {
      event.preventDefault();
      this.cancel();
    } else if (event.key === "Enter" && this.mode && onOverlay) {
      event.preventDefault();
      this.finish();
    } else if ((event.key === "Delete" || event.key === "Backspace") && !typing) {
      if (this.mode && this.draft.length) {
        event.preventDefault();
        this.draft.pop();
        this.update();
      } else if (!this.mode && this.selected >= 0) {
        event.preventDefault();
        this.remove(this.selected);
      }
    }
  }

  // Focus that was on the deleted row (or the picture) goes to the first remaining name, else the picture.
  remove(index) {
    const here = document.activeElement;
    const hadFocus = this.tools.contains(here) || here === this.svg;
    const [gone] = this.regions.splice(index, 1);
    this.selected = -1;
    this.say(`${gone.kind === "zone" ? "Zone" : "Line"} ${gone.name} deleted.`);
    this.changed();
    if (hadFocus) (this.list.querySelector("input") || (this.ready() ? this.svg : this.drawZone)).focus();
  }

  select(index) {
    if (index === this.selected) return;
    this.selected = index;
    for (const item of this.list.children) item.classList.toggle("selected", Number(item.dataset.index) === index);
    this.render();
  }

  say(text) { this.help.textContent = text; }

  // The buttons and the help for the current mode.
  update() {
    const ready = this.ready();
    for (const [control, kind] of [[this.drawZone, "zone"], [this.drawLine, "line"]]) {
      if (!control) continue;
      control.setAttribute("aria-pressed", String(this.mode === kind));
      control.disabled = !ready && this.mode !== kind;
    }
    show(this.finishButton, Boolean(this.mode));
    this.finishButton.disabled = this.draft.length < this.least();
    show(this.cancelButton, Boolean(this.mode));
    this.svg.classList.toggle("drawing", Boolean(this.mode));
    if (this.mode === "zone") {
      this.say(`Click or tap the picture to add corners (${this.draft.length} so far); click the `
        + "first corner, double-click or press Enter to close the zone (3 corners or more). Escape cancels.");
    } else if (this.mode === "line") {
      this.say(`Click or tap the picture to add points (${this.draft.length} so far); double-click or press Enter `
        + "to finish the line (2 points or more). Escape cancels.");
    } else if (!ready) {
      this.say(this.waiting);
    } else if (!this.help.textContent || this.help.textContent === this.waiting) {
      this.say(`Draw a zone${this.lines ? " or a line" : ""} on the picture to count what is inside`
        + `${this.lines ? " or crosses" : ""}. Select one and press Delete to remove it.`);
    }
    this.render();
  }

  // -- showing ---------------------------------------------------------------------------------------------

  // The picture's content box inside the stage (object-fit: contain), in CSS pixels; null while it has no size.
  box() {
    const media = this.media;
    const naturalWidth = media.naturalWidth || media.videoWidth || media.width;
    const naturalHeight = media.naturalHeight || media.videoHeight || media.height;
    if (!naturalWidth || !naturalHeight || !media.clientWidth || !media.clientHeight) return null;
    const scale = Math.min(media.clientWidth / naturalWidth, media.clientHeight / naturalHeight);
    const width = naturalWidth * scale, height = naturalHeight * scale;
    const left = media.offsetLeft + (media.clientWidth - width) / 2;
    const top = media.offsetTop + (media.clientHeight - height) / 2;
    const stage = media.parentElement.getBoundingClientRect();
    return { left: stage.left + left, top: stage.top + top, offsetLeft: left, offsetTop: top, width, height };
  }

  render() {
    const box = this.box();
    show(this.svg, box !== null);
    if (!box) { this.svg.replaceChildren(); return; }
    Object.assign(this.svg.style, { left: `${box.offsetLeft}px`, top: `${box.offsetTop}px`,
                                    width: `${box.width}px`, height: `${box.height}px` });
    this.svg.setAttribute("viewBox", `0 0 ${box.width} ${box.height}`);
    const px = (points) => points.map(([x, y]) => [x * box.width, y * box.height]);
    const text = (points) => points.map((p) => p.join(",")).join(" ");
    const shapes = [];
    let zoneIndex = 0;
    this.regions.forEach((region, index) => {
      const points = px(region.points);
      const group = svgElement("g", { "data-index": index, class: index === this.selected ? "selected" : "" });
      if (region.kind === "zone") {
        const color = zoneColor(zoneIndex++);
        group.append(svgElement("polygon", { points: text(points), fill: color, "fill-opacity": "0.25", stroke: color,
                                             "stroke-width": index === this.selected ? 4 : 2 }));
      } else {
        group.append(svgElement("polyline", { points: text(points), fill: "none", stroke: "#1d2329", "stroke-width": 6 }),
                     svgElement("polyline", { points: text(points), fill: "none", stroke: "#fff",
                                              "stroke-width": index === this.selected ? 4 : 2 }));
        group.append(...this.arrow(points, region.in, box));
      }
      const label = svgElement("text", { x: points[0][0] + 4, y: Math.max(points[0][1] - 6, 14), class: "label" });
      label.textContent = region.name;
      group.append(label);
      shapes.push(group);
    });
    if (this.mode && this.draft.length) {
      const points = px(this.draft);
      shapes.push(svgElement("polyline", { points: text(points), fill: "none", stroke: "#f0a500", "stroke-width": 2,
                                           "stroke-dasharray": "6 4" }));
      points.forEach(([x, y], i) => shapes.push(svgElement("circle", {
        cx: x, cy: y, r: i === 0 && this.mode === "zone" && this.draft.length >= 3 ? CLOSE_PX / 1.5 : 4,
        fill: i === 0 ? "#f0a500" : "#fff", stroke: "#1d2329" })));
    }
    this.svg.replaceChildren(...shapes);
  }

  // An arrow from the middle of a line's first segment towards its "in" side (as rtseg.render.scene draws it).
  arrow(points, side, box) {
    const [[ax, ay], [bx, by]] = points;
    const length = Math.hypot(bx - ax, by - ay) || 1;
    const [dx, dy] = [(bx - ax) / length, (by - ay) / length];
    const sign = side === "left" ? 1 : -1; // on the screen (y down) the left of a walk along (dx, dy) is (dy, -dx)
    const [nx, ny] = [dy * sign, -dx * sign];
    const size = Math.max(14, Math.min(box.width, box.height) / 12);
    const [mx, my] = [(ax + bx) / 2, (ay + by) / 2];
    const [tx, ty] = [mx + nx * size, my + ny * size];
    const head = [[tx, ty], [tx - nx * 7 + dx * 5, ty - ny * 7 + dy * 5], [tx - nx * 7 - dx * 5, ty - ny * 7 - dy * 5]];
    return [svgElement("line", { x1: mx, y1: my, x2: tx, y2: ty, stroke: IN_COLOR, "stroke-width": 3 }),
            svgElement("polygon", { points: head.map((p) => p.join(",")).join(" "), fill: IN_COLOR, class: "arrow" })];
  }

  renderList() {
    let zoneIndex = 0;
    const items = this.regions.map((region, index) => {
      const item = document.createElement("li");
      item.dataset.index = String(index);
      item.classList.toggle("selected", index === this.selected);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.background = region.kind === "zone" ? zoneColor(zoneIndex++) : "#fff";
      const name = document.createElement("input");
      name.type = "text";
      name.value = region.name;
      name.maxLength = 64;
      name.spellcheck = false;
      name.setAttribute("aria-label", `name of ${region.kind} ${index + 1}`);
      name.addEventListener("change", () => this.rename(region, name));
      item.append(swatch, name);
      if (region.kind === "line") {
        const side = document.createElement("span");
        side.textContent = `in: ${region.in}`;
        const flip = button("Flip in side", { label: `Flip which side of ${region.name} is in` });
        flip.addEventListener("click", () => {
          region.in = region.in === "left" ? "right" : "left";
          this.say(`The "in" side of ${region.name} is now its ${region.in}, where the green arrow points.`);
          this.changed();
          this.list.querySelector(`li[data-index="${index}"] button`).focus();
        });
        item.append(side, flip);
      }
      const remove = button("Delete", { label: `Delete ${region.kind} ${region.name}` });
      remove.addEventListener("click", () => this.remove(index));
      item.append(remove);
      return item;
    });
    this.list.replaceChildren(...items);
  }

  rename(region, input) {
    const wanted = input.value.trim();
    const taken = this.regions.some((other) => other !== region && other.name === wanted);
    const problemText = !NAME.test(wanted) ? `${wanted || "an empty name"}: use 1-64 letters, digits, '_', '-' or '.', `
      + "starting with a letter or digit" : taken ? `${wanted} is already the name of another zone or line` : null;
    input.setAttribute("aria-invalid", String(Boolean(problemText)));
    setError(this.error, problemText && `Names: ${problemText}`);
    if (problemText) return;
    region.name = wanted;
    this.changed();
  }
}

// Fills a tab's "Counts and events" section (video, webcam): the counts, then the events, newest first.
function buildScene(tab) {
  const section = $(`${tab}-scene`);
  const title = document.createElement("h3");
  title.id = `${tab}-scene-title`;
  title.textContent = "Counts and events";
  const counts = document.createElement("ul");
  counts.id = `${tab}-counts`;
  counts.className = "counts";
  counts.setAttribute("aria-label", `${tab} counts`);
  const total = document.createElement("p");
  total.id = `${tab}-events-total`;
  total.className = "help";
  const scroller = document.createElement("div"); // scrolls, so it takes the focus for keyboards
  scroller.className = "events";
  scroller.tabIndex = 0;
  scroller.setAttribute("role", "region");
  scroller.setAttribute("aria-label", `${tab} events, newest first`);
  const events = document.createElement("ol");
  events.id = `${tab}-events`;
  scroller.append(events);
  section.append(title, counts, total, scroller);
}

// The counts of a scene ({zones, lines} with their text lines from the server) in a tab's list.
function showCounts(list, scene) {
  const lines = scene ? [...scene.zones, ...scene.lines] : [];
  list.replaceChildren(...lines.map((region) => {
    const item = document.createElement("li");
    item.textContent = region.text;
    return item;
  }));
  show(list, lines.length > 0);
}

function eventText(event) {
  const who = `${event.class || "object"}${event.track_id === undefined ? "" : ` #${event.track_id}`}`;
  const when = `${event.time.toFixed(1)} s`;
  switch (event.kind) {
    case "enter": return `${when}: ${who} entered ${event.zone}`;
    case "exit": return `${when}: ${who} left ${event.zone} after ${event.dwell.toFixed(1)} s`;
    case "cross": return `${when}: ${who} crossed ${event.line}, ${event.direction}`;
    case "loiter": return `${when}: ${who} has stayed in ${event.zone} for ${event.dwell.toFixed(1)} s`;
    default: return `${when}: ${event.kind} ${event.zone || event.line || ""}`;
  }
}

// A tab's events, newest first, at most the server's recent ones; total is how many there were in all.
function showEvents(tab, events, total) {
  const list = $(`${tab}-events`);
  list.replaceChildren(...events.slice().reverse().slice(0, 50).map((event) => {
    const item = document.createElement("li");
    item.textContent = eventText(event);
    return item;
  }));
  $(`${tab}-events-total`).textContent = total === 0 ? "No events yet."
    : `${plural(total, "event")}${total > events.length ? `, the last ${events.length} listed` : ""}, newest first.`;
}

// -- image ----------------------------------------------------------------------------------------------

function clearImageResult() {
  state.image.id = null;
  state.image.request += 1; // an answer still on its way is for the old result: ignored
  $("result-image").removeAttribute("src");
  show($("image-result"), false);
  show($("image-summary"), false);
  show($("image-counts"), false);
  show($("objects-wrap"), false);
  clearLinks($("image-downloads"));
}

function updateImageRun() {
  $("run-image").disabled = !state.image.ok || state.image.running;
}

function chooseImage(file) {
  clearImageResult();
  choose("image", file, $("image-original"), updateImageRun);
}

function imagePreviewed() {
  const preview = $("image-preview");
  if (!preview.src || !state.image.file) return;
  state.image.ok = true;
  describeChosen($("image-chosen"), state.image.file, ` · ${preview.naturalWidth} × ${preview.naturalHeight} px`);
  show($("image-original"), true);
  updateImageRun();
}

function imagePreviewFailed() {
  if (!$("image-preview").getAttribute("src") || !state.image.file) return;
  state.image.ok = false;
  show($("image-original"), false);
  setError($("image-error"), `${state.image.file.name} cannot be shown as an image: choose a JPG, PNG, WebP or BMP file`);
  updateImageRun();
}

function maxSideProblem() {
  const side = $("max-side").valueAsNumber;
  const limit = state.info.max_side_limit;
  return Number.isInteger(side) && side >= 32 && side <= limit ? null
    : `Max size must be a whole number of pixels from 32 to ${limit}`;
}

async function runImage() {
  const image = state.image;
  const file = image.file;
  const bad = maxSideProblem();
  setError($("image-error"), bad);
  if (bad) { $("max-side").focus(); return; }
  clearImageResult();
  image.running = true;
  updateImageRun();
  state.uploads += 1;
  $("image-status").textContent = `Running the model on ${file.name}…`;
  let ran = false;
  try {
    const maxSide = encodeURIComponent($("max-side").value);
    const result = await upload(`/api/images?name=${encodeURIComponent(file.name)}&max_side=${maxSide}`, file);
    if (image.file !== file) return; // another file was chosen meanwhile
    Object.assign(image, { id: result.id, stem: result.stem, name: file.name });
    ran = await refreshImage();
  } catch (error) {
    setError($("image-error"), error.message);
  } finally {
    state.uploads -= 1;
    image.running = false;
    $("image-status").textContent = "";
    updateImageRun();
  }
  moveFocus($("run-image"), ran ? $("image-summary") : $("run-image"));
}

function imageSummary(objects) {
  const score = scoreText();
  const among = state.classes.length ? ` among ${state.classes.join(", ")}` : "";
  if (objects.length === 0) {
    return `No objects score ${score} or more${among} in ${state.image.name}: lower the score threshold to see weaker ones.`;
  }
  const counts = new Map();
  for (const o of objects) counts.set(o.class, (counts.get(o.class) || 0) + 1);
  const parts = Array.from(counts, ([name, count]) => `${count} ${name}`).join(", ");
  return `${plural(objects.length, "object")} ≥ ${score}${among} in ${state.image.name}: ${parts}.`;
}

// Re-filters the result the server holds: no upload, no model call. The picture and the table are asked for at
// once; the links follow the table, so all three always show the same filter. True when it is shown.
async function refreshImage() {
  const image = state.image;
  if (!image.id) return false;
  const request = ++image.request;
  let regions = "";
  try {
    regions = await state.editors.image.sync();
  } catch (ignored) { /* said beside the zones; the result shows none until they are fixed */ }
  if (request !== image.request) return false;
  const base = `/api/images/${image.id}`;
  const query = `${filterQuery()}${regions ? `&regions=${regions}` : ""}`;
  $("result-image").src = `${base}/annotated.png?${query}`;
  const response = await fetch(`${base}/objects?${query}`);
  if (request !== image.request) return false; // a newer slider position or another run is on its way
  if (!response.ok) {
    const message = await problem(response);
    clearImageResult();
    setError($("image-error"), message);
    return false;
  }
  const { objects, scene } = await response.json();
  if (request !== image.request) return false;
  showCounts($("image-counts"), scene);
  const rows = $("objects").tBodies[0];
  rows.replaceChildren(...objects.map((o) => {
    const row = document.createElement("tr");
    for (const cell of [o.class, o.score.toFixed(2), o.area, o.box.map((v) => v.toFixed(0)).join(", ")]) {
      row.insertCell().textContent = cell;
    }
    return row;
  }));
  $("image-summary").textContent = imageSummary(objects);
  show($("image-summary"), true);
  setLink("download-png", `${base}/annotated.png?${query}`, `${image.stem}-annotated.png`);
  setLink("download-json", `${base}/detections.json?${query}`, `${image.stem}-detections.json`);
  setLink("download-zip", `${base}/cutouts.zip?${query}`, `${image.stem}-cutouts.zip`);
  show($("objects-wrap"), objects.length > 0);
  show($("image-downloads"), true);
  return true;
}

// -- video ----------------------------------------------------------------------------------------------

// Containers the server reads that a browser may not preview (AVI, Matroska, MPEG-TS, MP4/MOV, FLV), by their
// first bytes: such a file may still run; anything else whose preview fails is refused before the upload.
const VIDEO_SIGNATURES = [[0, "RIFF"], [0, "\x1aE\xdf\xa3"], [4, "ftyp"], [0, "FLV"], [0, "G"]];

async function looksLikeVideo(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const text = String.fromCharCode(...head);
  return VIDEO_SIGNATURES.some(([at, magic]) => text.startsWith(magic, at)) && (text[0] !== "G" || file.size % 188 === 0);
}

function videoActive() { return state.video.uploading || Boolean(state.video.job && ACTIVE.includes(state.video.job.state)); }

function updateVideoRun() {
  $("run-video").disabled = !state.video.ok || videoActive();
}

function chooseVideo(file) {
  choose("video", file, $("video-stage"), updateVideoRun); // a result on screen stays until the next run
}

function videoPreviewed() {
  const preview = $("video-preview");
  if (!preview.src || !state.video.file) return;
  state.video.ok = true;
  const seconds = preview.duration;
  const length = Number.isFinite(seconds) ? ` · ${seconds.toFixed(1)} s` : "";
  describeChosen($("video-chosen"), state.video.file, `${length} · ${preview.videoWidth} × ${preview.videoHeight} px`);
  show($("video-stage"), true);
  updateVideoRun();
}

async function videoPreviewFailed() {
  const file = state.video.file;
  if (!$("video-preview").getAttribute("src") || !file) return;
  show($("video-stage"), false);
  if (await looksLikeVideo(file)) {
    if (state.video.file !== file) return;
    state.video.ok = true;
    describeChosen($("video-chosen"), file, " · no preview in this browser; the server reads it when you run it");
  } else {
    state.video.ok = false;
    setError($("video-error"), `${file.name} cannot be read as a video: choose an MP4, MOV, MKV, WebM or AVI file`);
  }
  updateVideoRun();
}

function clearVideoResult() {
  const result = $("result-video");
  result.pause();
  result.removeAttribute("src");
  result.load(); // lets go of the old file
  show(result, false);
  show($("video-summary"), false);
  show($("video-scene"), false);
  clearLinks($("video-downloads"));
}

function remember(job) {
  if (job) sessionStorage.setItem(VIDEO_KEY, JSON.stringify({ id: job.id, name: job.name, stem: job.stem }));
  else sessionStorage.removeItem(VIDEO_KEY);
}

async function runVideo() {
  const video = state.video;
  const file = video.file;
  setError($("video-error"), null);
  clearVideoResult();
  video.job = null;
  video.uploading = true;
  state.uploads += 1;
  updateVideoRun();
  $("progress").value = 0;
  $("progress-text").textContent = `Uploading ${file.name}…`;
  show($("video-progress"), true);
  try {
    const regions = await state.editors.video.sync(); // bad zones or lines: said, and nothing is uploaded
    const result = await upload(`/api/videos?name=${encodeURIComponent(file.name)}&${filterQuery()}&regions=${regions}`, file);
    video.job = { id: result.id, name: file.name, stem: result.stem, state: "queued" };
    remember(video.job);
    show($("cancel-video"), true);
    $("cancel-video").disabled = false;
    moveFocus($("run-video"), $("cancel-video"));
    pollVideo(video.job);
  } catch (error) {
    show($("video-progress"), false);
    setError($("video-error"), error.message);
  } finally {
    video.uploading = false;
    state.uploads -= 1;
    updateVideoRun();
  }
}

function progressText(job, status) {
  const total = status.frames_total;
  const frames = `${status.frames_done}${total ? ` / ${total}` : ""} frames`;
  switch (status.state) {
    case "queued":
      return status.ahead > 0 ? `Queued: ${plural(status.ahead, "job")} ahead of ${job.name}` : `Queued: ${job.name} starts next`;
    case "running": {
      const eta = status.eta_seconds === null ? "" : `, about ${Math.ceil(status.eta_seconds)} s left`;
      return `${job.cancelling ? "Cancelling" : "Running"}: ${frames}${eta}`;
    }
    case "done": return `Done: ${frames}`;
    case "cancelled": return status.frames_done ? `Cancelled after ${frames}; nothing was kept` : "Cancelled before it started";
    default: return `Failed after ${frames}`;
  }
}

// Shows one status answer for the tab's job; the last word on a finished job also ends the polling.
function showVideoStatus(job, status) {
  if (state.video.job !== job) return; // another job replaced it
  job.state = status.state;
  const total = status.frames_total;
  if (total) $("progress").value = Math.min(100, (100 * status.frames_done) / total);
  $("progress-text").textContent = progressText(job, status);
  show($("video-progress"), true);
  show($("video-scene"), status.analytics && status.state !== "queued");
  if (status.analytics) {
    showCounts($("video-counts"), status.scene);
    showEvents("video", status.events, status.events_total);
  }
  if (ACTIVE.includes(status.state)) return;
  show($("cancel-video"), false);
  updateVideoRun(); // before focus moves: a disabled Run could not take it
  if (status.state === "done") {
    $("progress").value = 100;
    const base = `/api/videos/${job.id}`;
    $("result-video").src = `${base}/annotated.mp4`;
    show($("result-video"), true);
    $("video-summary").textContent = `Result for ${job.name}: ${plural(status.frames_done, "frame")}, tracked.`;
    show($("video-summary"), true);
    setLink("download-mp4", `${base}/annotated.mp4`, `${job.stem}-annotated.mp4`);
    setLink("download-jsonl", `${base}/detections.jsonl`, `${job.stem}-detections.jsonl`);
    setLink("download-heatmap", `${base}/heatmap.png`, `${job.stem}-heatmap.png`);
    if (status.analytics) setLink("download-events", `${base}/events.jsonl`, `${job.stem}-events.jsonl`);
    show($("download-events"), status.analytics);
    show($("video-downloads"), true);
    moveFocus($("cancel-video"), $("video-summary"));
  } else {
    clearVideoResult();
    remember(null);
    if (status.state === "failed") setError($("video-error"), status.error);
    moveFocus($("cancel-video"), $("run-video"));
  }
}

async function pollVideo(job) {
  while (state.video.job === job && ACTIVE.includes(job.state)) {
    const response = await fetch(`/api/videos/${job.id}`);
    if (state.video.job !== job) return;
    if (!response.ok) {
      const message = response.status === 404 ? `the video job for ${job.name} is no longer on the server` : await problem(response);
      forgetVideoJob(message);
      return;
    }
    showVideoStatus(job, await response.json());
    if (ACTIVE.includes(job.state)) await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

function forgetVideoJob(message) {
  state.video.job = null;
  remember(null);
  clearVideoResult();
  show($("video-progress"), false);
  show($("cancel-video"), false);
  setError($("video-error"), message);
  updateVideoRun();
}

async function cancelVideo() {
  const job = state.video.job;
  if (!job || !ACTIVE.includes(job.state)) return;
  job.cancelling = true;
  $("cancel-video").disabled = true;
  clearLinks($("video-downloads"));
  $("progress-text").textContent = "Cancelling…";
  const response = await fetch(`/api/videos/${job.id}/cancel`, { method: "POST" });
  if (response.ok) showVideoStatus(job, await response.json()); // a queued job is cancelled at once
  else setError($("video-error"), await problem(response));
}

// After a reload: the tab's job, found again on the server, with its progress or its result.
function reconnectVideo() {
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(VIDEO_KEY)); } catch (ignored) { /* not ours: forget it */ }
  if (!saved || !/^[0-9a-f]{32}$/.test(saved.id)) { remember(null); return; }
  state.video.job = { id: saved.id, name: String(saved.name), stem: String(saved.stem), state: "queued" };
  selectTab("video");
  $("progress-text").textContent = `Reconnecting to the job for ${state.video.job.name}…`;
  show($("video-progress"), true);
  show($("cancel-video"), true);
  updateVideoRun();
  pollVideo(state.video.job);
}

// -- webcam ---------------------------------------------------------------------------------------------
// Frames go out as: 4-byte big-endian sequence number + JPEG. At most a few are unanswered at once; the server
// answers the newest and drops the rest, so the picture is never more than a frame behind. An answer is drawn
// on the canvas only once decoded, so the view never blanks between frames.

const MAX_UNANSWERED = 3;
const MAX_WIDTH = 640;

// The settings with the id of the zones and lines (sent to the server first); only the newest call sends.
async function sendWebcamSettings() {
  const webcam = state.webcam;
  if (!webcam || webcam.socket.readyState !== WebSocket.OPEN) return;
  const turn = ++webcam.settingsTurn;
  let regions = null;
  try {
    regions = (await state.editors.webcam.sync()) || null;
  } catch (ignored) { /* said beside the zones; the camera goes on without them */ }
  if (turn !== webcam.settingsTurn || webcam.socket.readyState !== WebSocket.OPEN) return;
  webcam.socket.send(JSON.stringify({ score: Number($("score").value), classes: state.classes, regions }));
}

function showWebcamScene(webcam, facts) {
  show($("webcam-scene"), Boolean(facts.scene));
  if (!facts.scene) { webcam.events = []; webcam.eventsTotal = 0; return; }
  showCounts($("webcam-counts"), facts.scene);
  webcam.events = [...webcam.events, ...facts.events].slice(-50);
  webcam.eventsTotal += facts.events.length;
  showEvents("webcam", webcam.events, webcam.eventsTotal);
}

function resetMeters() {
  $("fps").textContent = "-";
  $("latency").textContent = "-";
  $("dropped").textContent = "0";
}

async function startWebcam() {
  setError($("webcam-error"), null);
  $("webcam-start").disabled = true;
  $("webcam-status").textContent = "Asking the browser for your camera…";
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setError($("webcam-error"), `The webcam cannot be opened: ${error.message}`);
    $("webcam-status").textContent = "Stopped.";
    $("webcam-start").disabled = false;
    return;
  }
  const source = $("webcam-source");
  source.srcObject = camera;
  await source.play();
  const view = $("webcam-view");
  view.width = 0;
  view.dataset.frames = "0";
  resetMeters();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/live`);
  socket.binaryType = "blob";
  const webcam = { camera, socket, canvas: document.createElement("canvas"), sent: 0, answered: 0, drawn: 0,
                   frames: 0, sentAt: new Map(), arrivals: [], facts: null, timer: null, settingsTurn: 0,
                   events: [], eventsTotal: 0 };
  state.webcam = webcam;
  socket.onopen = () => {
    sendWebcamSettings();
    webcam.timer = setInterval(() => sendFrame(webcam), 30);
    $("webcam-status").textContent = "Live: your camera on the left, what the model finds on the right.";
  };
  socket.onmessage = (event) => receive(webcam, event.data);
  socket.onclose = (event) => {
    const unexplained = state.webcam === webcam && event.code !== 1000 && $("webcam-error").hidden;
    if (unexplained) setError($("webcam-error"), event.reason || "The connection to the server closed.");
    stopWebcam(webcam);
  };
  $("webcam-stop").disabled = false;
  show($("webcam-pair"), true);
  state.editors.webcam.update();
  $("webcam-pair").scrollIntoView({ block: "nearest", behavior: "smooth" });
  moveFocus($("webcam-start"), $("webcam-stop"));
}

function sendFrame(webcam) {
  const video = $("webcam-source");
  if (webcam.socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  if (webcam.sent - webcam.answered >= MAX_UNANSWERED || webcam.encoding) return;
  const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
  webcam.canvas.width = Math.round(video.videoWidth * scale);
  webcam.canvas.height = Math.round(video.videoHeight * scale);
  webcam.canvas.getContext("2d").drawImage(video, 0, 0, webcam.canvas.width, webcam.canvas.height);
  webcam.encoding = true;
  webcam.canvas.toBlob((jpeg) => {
    webcam.encoding = false;
    if (!jpeg || webcam.socket.readyState !== WebSocket.OPEN) return;
    const seq = ++webcam.sent;
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, seq);
    webcam.sentAt.set(seq, performance.now());
    webcam.socket.send(new Blob([header, jpeg]));
  }, "image/jpeg", 0.8);
}

async function receive(webcam, data) {
  if (typeof data === "string") {
    const facts = JSON.parse(data);
    if (facts.error) setError($("webcam-error"), facts.error);
    if (facts.seq !== undefined) {
      webcam.answered = Math.max(webcam.answered, facts.seq); // older frames were dropped: none is pending
      webcam.facts = facts;
      if (!facts.error) showWebcamScene(webcam, facts);
    }
    return;
  }
  const facts = webcam.facts; // the facts sent just before this frame
  const picture = await createImageBitmap(data);
  if (state.webcam !== webcam || !facts || facts.seq <= webcam.drawn) { picture.close(); return; }
  webcam.drawn = facts.seq;
  const view = $("webcam-view");
  if (view.width !== picture.width || view.height !== picture.height) {
    view.width = picture.width;
    view.height = picture.height;
  }
  view.getContext("2d").drawImage(picture, 0, 0);
  picture.close();
  webcam.frames += 1;
  view.dataset.frames = String(webcam.frames);
  const now = performance.now();
  webcam.arrivals.push(now);
  while (webcam.arrivals.length && now - webcam.arrivals[0] > 2000) webcam.arrivals.shift();
  const span = (now - webcam.arrivals[0]) / 1000;
  $("fps").textContent = (span > 0 ? (webcam.arrivals.length - 1) / span : 0).toFixed(1);
  if (webcam.sentAt.has(facts.seq)) $("latency").textContent = (now - webcam.sentAt.get(facts.seq)).toFixed(0);
  for (const seq of webcam.sentAt.keys()) if (seq <= facts.seq) webcam.sentAt.delete(seq);
  $("dropped").textContent = facts.dropped;
}

// Stopped means stopped: the camera is released and the last frame and the meters are cleared, not left up.
function stopWebcam(webcam = state.webcam) {
  if (!webcam) return;
  clearInterval(webcam.timer);
  webcam.camera.getTracks().forEach((track) => track.stop());
  if (webcam.socket.readyState <= WebSocket.OPEN) webcam.socket.close(1000);
  if (state.webcam !== webcam) return;
  state.webcam = null;
  $("webcam-source").srcObject = null;
  const view = $("webcam-view");
  view.width = 0;
  view.height = 0;
  show($("webcam-pair"), false);
  show($("webcam-scene"), false);
  state.editors.webcam.cancel();
  state.editors.webcam.update();
  resetMeters();
  const cause = $("webcam-error").hidden ? "" : " after an error";
  $("webcam-status").textContent = `Stopped${cause}: ${plural(webcam.frames, "frame")} annotated. Start streams again.`;
  $("webcam-start").disabled = false;
  $("webcam-stop").disabled = true;
  moveFocus($("webcam-stop"), $("webcam-start"));
}

// -- wiring ---------------------------------------------------------------------------------------------

window.addEventListener("DOMContentLoaded", async () => {
  try {
    await loadInfo();
  } catch (error) {
    setError($("busy"), `The page cannot start: ${error.message}`);
    return;
  }
  $("score").addEventListener("input", settingsChanged);
  buildScene("video");
  buildScene("webcam");
  state.editors = {
    image: new RegionEditor("image", $("image-preview"), {
      lines: false, onChange: () => refreshImage(), waiting: "Choose an image to draw zones on it." }),
    video: new RegionEditor("video", $("video-preview"), {
      lines: true, onChange: () => {}, waiting: "Choose a video to draw on its first frame. Zones and lines in "
        + "force at Run apply to the whole video." }),
    webcam: new RegionEditor("webcam", $("webcam-source"), {
      lines: true, onChange: sendWebcamSettings, waiting: "Start the webcam to draw on its picture." }),
  };
  wirePicker();
  wireTabs();
  wireDropZones();
  $("image-preview").addEventListener("load", imagePreviewed);
  $("image-preview").addEventListener("error", imagePreviewFailed);
  $("result-image").addEventListener("load", () => show($("image-result"), Boolean($("result-image").getAttribute("src"))));
  $("video-preview").addEventListener("loadeddata", videoPreviewed);
  $("video-preview").addEventListener("error", videoPreviewFailed);
  $("run-image").addEventListener("click", runImage);
  $("run-video").addEventListener("click", runVideo);
  $("cancel-video").addEventListener("click", cancelVideo);
  $("webcam-start").addEventListener("click", startWebcam);
  $("webcam-stop").addEventListener("click", () => stopWebcam());
  window.addEventListener("beforeunload", (event) => {
    if (state.uploads > 0) { event.preventDefault(); event.returnValue = ""; }
  });
  reconnectVideo();
  document.body.dataset.ready = "true";
});
