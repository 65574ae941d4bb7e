// The rtseg page: one image, video or webcam at a time, against the endpoints of rtseg/web/app.py.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, imageId: null, imageRequest: 0, videoId: null, webcam: null };

function show(element, visible) { element.hidden = !visible; }

function setError(element, message) {
  element.textContent = message || "";
  show(element, Boolean(message));
}

// The one line the server sent (FastAPI's {"detail": ...}), or the status when there is none.
async function problem(response) {
  let text = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") text = body.detail;
  } catch (ignored) { /* not JSON: keep the status line */ }
  if (response.status === 503) setError($("busy"), text);
  return text;
}

function filterQuery() {
  const classes = Array.from($("classes").selectedOptions, (o) => o.value);
  return `score=${encodeURIComponent($("score").value)}&classes=${encodeURIComponent(classes.join(","))}`;
}

function tooLarge(file) {
  const limit = state.info.max_upload_bytes;
  return file.size > limit ? `${file.name} is larger than the upload limit of ${Math.round(limit / 2 ** 20)} MB` : null;
}

async function upload(url, file) {
  setError($("busy"), null);
  const response = await fetch(url, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}

// -- settings ---------------------------------------------------------------------------------------

async function loadInfo() {
  const response = await fetch("/api/info");
  state.info = await response.json();
  const select = $("classes");
  for (const name of state.info.classes) {
    const option = new Option(name, name, false, state.info.default_classes.includes(name));
    select.add(option);
  }
  $("score").min = state.info.min_score;
  $("score").value = state.info.score_threshold;
  $("max-side").value = state.info.max_side;
  showScore();
}

function showScore() { $("score-value").textContent = Number($("score").value).toFixed(2); }

let refilterTimer = null;
function settingsChanged() {
  showScore();
  clearTimeout(refilterTimer);
  refilterTimer = setTimeout(() => { refreshImage(); sendWebcamSettings(); }, 60);
}

// -- image ------------------------------------------------------------------------------------------

function imageChosen() {
  const file = $("image-file").files[0];
  state.imageId = null;
  setError($("image-error"), null);
  $("result-image").removeAttribute("src");
  show($("objects"), false);
  show($("image-downloads"), false);
  if ($("image-preview").src) URL.revokeObjectURL($("image-preview").src);
  if (file) $("image-preview").src = URL.createObjectURL(file); else $("image-preview").removeAttribute("src");
  $("run-image").disabled = !file;
}

async function runImage() {
  const file = $("image-file").files[0];
  setError($("image-error"), tooLarge(file));
  if (tooLarge(file)) return;
  $("run-image").disabled = true;
  $("image-status").textContent = "running the model...";
  try {
    const maxSide = encodeURIComponent($("max-side").value);
    const result = await upload(`/api/images?name=${encodeURIComponent(file.name)}&max_side=${maxSide}`, file);
    state.imageId = result.id;
    await refreshImage();
  } catch (error) {
    setError($("image-error"), error.message);
  } finally {
    $("image-status").textContent = "";
    $("run-image").disabled = false;
  }
}

// Re-filters the result the server holds: no upload, no model call.
async function refreshImage() {
  if (!state.imageId) return;
  const request = ++state.imageRequest;
  const base = `/api/images/${state.imageId}`;
  const query = filterQuery();
  const response = await fetch(`${base}/objects?${query}`);
  if (request !== state.imageRequest) return; // a newer slider position is on its way
  if (!response.ok) { setError($("image-error"), await problem(response)); return; }
  const { objects } = await response.json();
  const rows = $("objects").tBodies[0];
  rows.replaceChildren(...objects.map((o) => {
    const row = document.createElement("tr");
    for (const cell of [o.class, o.score.toFixed(2), o.area, o.box.map((v) => v.toFixed(0)).join(", ")]) {
      row.insertCell().textContent = cell;
    }
    return row;
  }));
  $("result-image").src = `${base}/annotated.png?${query}`;
  $("download-png").href = `${base}/annotated.png?${query}`;
  $("download-json").href = `${base}/detections.json?${query}`;
  $("download-zip").href = `${base}/cutouts.zip?${query}`;
  show($("objects"), true);
  show($("image-downloads"), true);
}

// -- video ------------------------------------------------------------------------------------------

function videoChosen() {
  $("run-video").disabled = !$("video-file").files[0];
  setError($("video-error"), null);
}

async function runVideo() {
  const file = $("video-file").files[0];
  setError($("video-error"), tooLarge(file));
  if (tooLarge(file)) return;
  $("run-video").disabled = true;
  show($("result-video"), false);
  show($("video-downloads"), false);
  $("result-video").removeAttribute("src");
  $("progress").value = 0;
  $("progress-text").textContent = "uploading...";
  show($("video-progress"), true);
  try {
    const result = await upload(`/api/videos?name=${encodeURIComponent(file.name)}&${filterQuery()}`, file);
    state.videoId = result.id;
    show($("cancel-video"), true);
    pollVideo(result.id);
  } catch (error) {
    show($("video-progress"), false);
    setError($("video-error"), error.message);
    $("run-video").disabled = false;
  }
}

async function pollVideo(id) {
  const response = await fetch(`/api/videos/${id}`);
  if (!response.ok) { setError($("video-error"), await problem(response)); return videoEnded(); }
  const job = await response.json();
  const total = job.frames_total;
  if (total) $("progress").value = Math.min(100, (100 * job.frames_done) / total);
  const eta = job.eta_seconds === null ? "" : `, about ${Math.ceil(job.eta_seconds)} s left`;
  $("progress-text").textContent = `${job.state}: ${job.frames_done}${total ? " / " + total : ""} frames${eta}`;
  if (job.state === "queued" || job.state === "running") { setTimeout(() => pollVideo(id), 300); return; }
  if (job.state === "done") {
    $("progress").value = 100;
    const base = `/api/videos/${id}`;
    $("result-video").src = `${base}/annotated.mp4`;
    $("download-mp4").href = `${base}/annotated.mp4`;
    $("download-jsonl").href = `${base}/detections.jsonl`;
    show($("result-video"), true);
    show($("video-downloads"), true);
  } else if (job.state === "failed") {
    setError($("video-error"), job.error);
  }
  videoEnded();
}

function videoEnded() {
  show($("cancel-video"), false);
  $("run-video").disabled = !$("video-file").files[0];
}

async function cancelVideo() {
  if (state.videoId) await fetch(`/api/videos/${state.videoId}/cancel`, { method: "POST" });
}

// -- webcam -----------------------------------------------------------------------------------------
// Frames go out as: 4-byte big-endian sequence number + JPEG. At most a few are unanswered at once;
// the server answers the newest and drops the rest, so the picture is never more than a frame behind.

const MAX_UNANSWERED = 3;
const MAX_WIDTH = 640;

function sendWebcamSettings() {
  const webcam = state.webcam;
  if (!webcam || webcam.socket.readyState !== WebSocket.OPEN) return;
  const classes = Array.from($("classes").selectedOptions, (o) => o.value);
  webcam.socket.send(JSON.stringify({ score: Number($("score").value), classes }));
}

async function startWebcam() {
  setError($("webcam-error"), null);
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setError($("webcam-error"), `the webcam cannot be opened: ${error.message}`);
    return;
  }
  const video = $("webcam-source");
  video.srcObject = camera;
  await video.play();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/live`);
  socket.binaryType = "blob";
  const webcam = { camera, socket, canvas: document.createElement("canvas"), sent: 0, answered: 0,
                   sentAt: new Map(), arrivals: [], facts: null, timer: null };
  state.webcam = webcam;
  socket.onopen = () => { sendWebcamSettings(); webcam.timer = setInterval(() => sendFrame(webcam), 30); };
  socket.onmessage = (event) => receive(webcam, event.data);
  socket.onclose = (event) => {
    const unexplained = state.webcam === webcam && event.code !== 1000 && $("webcam-error").hidden;
    if (unexplained) setError($("webcam-error"), event.reason || "the connection to the server closed");
    stopWebcam(webcam);
  };
  $("webcam-start").disabled = true;
  $("webcam-stop").disabled = false;
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

function receive(webcam, data) {
  if (typeof data === "string") {
    const facts = JSON.parse(data);
    if (facts.error) { setError($("webcam-error"), facts.error); }
    if (facts.seq !== undefined) {
      webcam.answered = Math.max(webcam.answered, facts.seq); // older frames were dropped: none is pending
      webcam.facts = facts;
    }
    return;
  }
  const facts = webcam.facts;
  const view = $("webcam-view");
  if (view.src) URL.revokeObjectURL(view.src);
  view.src = URL.createObjectURL(data);
  const now = performance.now();
  webcam.arrivals.push(now);
  while (webcam.arrivals.length && now - webcam.arrivals[0] > 2000) webcam.arrivals.shift();
  const span = (now - webcam.arrivals[0]) / 1000;
  $("fps").textContent = (span > 0 ? (webcam.arrivals.length - 1) / span : 0).toFixed(1);
  if (facts && webcam.sentAt.has(facts.seq)) $("latency").textContent = (now - webcam.sentAt.get(facts.seq)).toFixed(0);
  for (const seq of webcam.sentAt.keys()) if (facts && seq <= facts.seq) webcam.sentAt.delete(seq);
  if (facts) $("dropped").textContent = facts.dropped;
}

function stopWebcam(webcam = state.webcam) {
  if (!webcam) return;
  clearInterval(webcam.timer);
  webcam.camera.getTracks().forEach((track) => track.stop());
  if (webcam.socket.readyState <= WebSocket.OPEN) webcam.socket.close(1000);
  if (state.webcam === webcam) state.webcam = null;
  $("webcam-start").disabled = false;
  $("webcam-stop").disabled = true;
}

// -- wiring -----------------------------------------------------------------------------------------

window.addEventListener("DOMContentLoaded", async () => {
  await loadInfo();
  $("score").addEventListener("input", settingsChanged);
  $("classes").addEventListener("change", settingsChanged);
  $("classes-all").addEventListener("click", () => { $("classes").selectedIndex = -1; settingsChanged(); });
  $("image-file").addEventListener("change", imageChosen);
  $("run-image").addEventListener("click", runImage);
  $("video-file").addEventListener("change", videoChosen);
  $("run-video").addEventListener("click", runVideo);
  $("cancel-video").addEventListener("click", cancelVideo);
  $("webcam-start").addEventListener("click", startWebcam);
  $("webcam-stop").addEventListener("click", () => stopWebcam());
  document.body.dataset.ready = "true";
});
