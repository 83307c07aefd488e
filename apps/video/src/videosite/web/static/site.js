// The site's own script: live status on the gallery and video pages, new uploads on an open
// gallery, the quality switch, the upload form's progress, the player's view events and the
// views-per-hour chart (drawn by uPlot, /static/vendor/, when the page loads it). No inline
// scripts anywhere (the CSP forbids them).
"use strict";

// The stages that report progress on the status stream, and every stage a video goes
// through (the join has no progress of its own: it waits for the three). The server draws
// the same (videosite/web/_stages.py) for the first paint.
const WORKERS = ["probe", "thumbnail", "transcode"];
const FINISHED = ["ready", "failed"];

function fraction(progress) {
  let sum = 0;
  for (const stage of WORKERS) sum += progress[stage] ? Math.min(1, progress[stage].fraction) : 0;
  return sum / WORKERS.length;
}

function stageStates(status, progress) {
  const states = {};
  for (const stage of WORKERS) {
    const p = progress[stage];
    if (!p) states[stage] = ["waiting", "waiting"];
    else if (p.fraction < 1) states[stage] = ["running", Math.round(p.fraction * 100) + "%"];
    else if ((p.message || "").startsWith("failed")) states[stage] = ["failed", "failed"];
    else states[stage] = ["done", "done"];
  }
  if (status === "ready") states.join = ["done", "done"];
  else if (status === "failed") states.join = ["failed", "failed"];
  else if (WORKERS.every((s) => states[s][0] === "done" || states[s][0] === "failed")) {
    states.join = ["running", "joining"];
  } else states.join = ["waiting", "waiting"];
  return states;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function minutes(seconds) {
  const whole = Math.round(seconds);
  return Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0");
}

// A gallery card whose video finished: its poster, length, size and rungs as the server
// would draw them, without a reload.
function finishCard(item, doc) {
  const thumb = item.querySelector(".thumb");
  const meta = item.querySelector(".card-meta");
  if (doc.poster && thumb && thumb.querySelector(".noposter")) {
    const img = element("img");
    img.src = doc.poster;
    img.alt = "";
    img.width = 320;
    img.height = 180;
    thumb.querySelector(".noposter").replaceWith(img);
  }
  const length = item.querySelector(".duration");
  if (length && doc.metadata) length.textContent = minutes(doc.metadata.duration_s);
  if (meta && doc.metadata && !meta.querySelector(".size")) {
    meta.appendChild(element("span", "size", doc.metadata.width + "×" + doc.metadata.height));
  }
  if (meta && doc.renditions && doc.renditions.length && !meta.querySelector(".rungs")) {
    meta.appendChild(element("span", "rungs", doc.renditions.map((r) => r.name).join(" · ")));
  }
  if (doc.reason && !item.querySelector(".reason")) item.appendChild(element("p", "reason", doc.reason));
}

function followStatus() {
  for (const item of document.querySelectorAll("[data-video-id][data-status]")) follow(item);
}

// One processing video's badge, bar and stages, every 1.5 s until it is finished.
function follow(item) {
  if (FINISHED.includes(item.dataset.status)) return;
  const poll = async () => {
    let doc;
    try {
      const res = await fetch("/api/videos/" + encodeURIComponent(item.dataset.videoId));
      if (!res.ok) return setTimeout(poll, 3000);
      doc = await res.json();
    } catch (err) { return setTimeout(poll, 3000); }
    const progress = doc.progress || {};
    const finished = FINISHED.includes(doc.status);
    const wasProcessing = !FINISHED.includes(item.dataset.status);
    item.dataset.status = doc.status;
    const label = item.classList.contains("status") ? item : item.querySelector(".status");
    const scope = item.classList.contains("status") ? item.closest(".panel") || document : item;
    const bar = scope.querySelector("progress");
    const stages = scope.querySelector(".stages");
    const done = Math.round(fraction(progress) * 100);
    if (label) {
      label.dataset.status = doc.status;
      label.textContent = finished ? doc.status : doc.status + " " + done + "%";
    }
    if (bar) bar.value = fraction(progress);
    if (stages) {
      const states = stageStates(doc.status, progress);
      for (const li of stages.querySelectorAll("li[data-stage]")) {
        const [state, text] = states[li.dataset.stage] || ["waiting", "waiting"];
        li.dataset.state = state;
        li.querySelector(".state").textContent = text;
      }
    }
    if (finished) {
      if (bar) bar.remove();
      if (stages) stages.remove();
      if (item.classList.contains("card")) finishCard(item, doc);
      // the player page: what a finished video shows (the player) is the server's to draw
      else if (wasProcessing && item.dataset.reloadWhenDone !== undefined) location.reload();
      return;
    }
    setTimeout(poll, 1500);
  };
  poll();
}

// An open gallery takes in the videos uploaded since it was drawn: every GALLERY_POLL_MS it
// asks for the catalog's ids (GET /api/videos), and the cards of those it does not show
// come drawn by the server (GET /fragments/cards), each put in its place by upload time.
const GALLERY_POLL_MS = 3000;

function followGallery() {
  const gallery = document.querySelector("ul.gallery");
  if (!gallery) return;
  const poll = async () => {
    try {
      const res = await fetch("/api/videos", { headers: { Accept: "application/json" } });
      if (res.ok) {
        const shown = new Set(Array.from(gallery.children, (li) => li.dataset.videoId));
        const fresh = (await res.json()).videos.filter((v) => !shown.has(v.id)).slice(0, 50);
        if (fresh.length) await addCards(gallery, fresh.map((v) => v.id));
      }
    } catch (err) { /* the next poll tries again */ }
    setTimeout(poll, GALLERY_POLL_MS);
  };
  setTimeout(poll, GALLERY_POLL_MS);
}

async function addCards(gallery, ids) {
  const res = await fetch("/fragments/cards?ids=" + ids.join(","));
  if (!res.ok) return;
  const drawn = document.createElement("template");
  drawn.innerHTML = await res.text();  // the server's template, escaped as every page is
  for (const card of Array.from(drawn.content.querySelectorAll("li.card"))) {
    if (gallery.querySelector(`[data-video-id="${card.dataset.videoId}"]`)) continue;
    const at = Number(card.dataset.uploadedAt);
    const after = Array.from(gallery.children).find((li) => Number(li.dataset.uploadedAt) < at);
    gallery.insertBefore(card, after || null);
    follow(card);
  }
  const empty = document.getElementById("no-videos");
  if (empty && gallery.children.length) empty.remove();
}

function qualitySwitch() {
  const player = document.getElementById("player");
  const select = document.getElementById("quality");
  if (!player || !select) return;
  select.addEventListener("change", () => {
    const at = player.currentTime;
    const playing = !player.paused;
    player.src = select.value;
    player.addEventListener("loadedmetadata", () => {
      player.currentTime = at;
      if (playing) player.play().catch(() => {});
    }, { once: true });
    player.load();
  });
}

function uploadForm() {
  const form = document.getElementById("upload");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const out = document.getElementById("upload-result");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData();
    data.append("title", form.elements.title.value);
    data.append("file", form.elements.file.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/videos");
    xhr.setRequestHeader("Authorization", "Bearer " + form.elements.token.value);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = e.loaded / e.total;
    });
    out.classList.remove("refused");
    xhr.addEventListener("load", () => {
      let doc = {};
      try { doc = JSON.parse(xhr.responseText); } catch (err) { doc = {}; }
      out.textContent = "";
      if (xhr.status === 202) {
        const link = document.createElement("a");
        link.href = doc.page_url;
        link.textContent = "Uploaded: processing (" + doc.id + ")";
        out.appendChild(link);
      } else {
        out.classList.add("refused");
        out.textContent = "Refused (" + xhr.status + "): " + (doc.detail || xhr.statusText);
      }
    });
    xhr.addEventListener("error", () => {
      out.classList.add("refused");
      out.textContent = "The upload failed.";
    });
    xhr.send(data);
  });
}

// A playback is a session: "start" when it begins (one view), "progress" every
// PROGRESS_EVERY_S seconds of the video reached, "end" when it ends or the page is left; a
// play after the end is a new playback. Events go to POST /api/views; a refused one is not
// sent again (the throttle's 429 says when the client may send more).
const PROGRESS_EVERY_S = 10;

function newSession() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function viewEvents() {
  const player = document.getElementById("player");
  if (!player || !player.dataset.videoId) return;
  let session = null;
  let reported = 0;
  const send = (event) => {
    const body = JSON.stringify({
      video_id: player.dataset.videoId, event: event, session: session,
      position_s: Math.max(0, player.currentTime || 0),
    });
    fetch("/api/views", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: body,
      keepalive: true,
    }).catch(() => {});
  };
  player.addEventListener("play", () => {
    if (session !== null) return;
    session = newSession();
    reported = 0;
    send("start");
  });
  player.addEventListener("timeupdate", () => {
    if (session === null) return;
    const step = Math.floor(player.currentTime / PROGRESS_EVERY_S);
    if (step > reported) {
      reported = step;
      send("progress");
    }
  });
  const end = () => {
    if (session === null) return;
    send("end");
    session = null;
  };
  player.addEventListener("ended", end);
  window.addEventListener("pagehide", end);
}

function viewsChart() {
  const box = document.getElementById("views-chart");
  if (!box || typeof uPlot === "undefined") return;
  const data = JSON.parse(box.dataset.hours);
  // the box's width, whole pixels down: the chart never sticks out of it
  const width = () => Math.max(240, Math.floor(box.getBoundingClientRect().width) || 640);
  const most = Math.max(1, ...data.views);
  const options = {
    width: width(), height: 200,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    legend: { show: false }, cursor: { show: false },
    // each bar spans its hour: the last one ends an hour after its start
    scales: {
      x: { time: true, range: (u, min, max) => [min, max + 3600] },
      y: { range: () => [0, most + Math.ceil(most / 10)] },
    },
    axes: [{}, { label: "views", size: 50 }],
    series: [{}, {
      label: "views", stroke: "#2a7", fill: "rgba(34, 170, 119, 0.35)",
      paths: uPlot.paths.bars({ size: [0.8], align: 1 }), points: { show: false },
    }],
  };
  const chart = new uPlot(options, [data.start.map((ms) => ms / 1000), data.views], box);
  box.classList.add("drawn");
  // the page reflows (a phone turned, a window resized): the chart takes its box's width
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => chart.setSize({ width: width(), height: 200 }), 100);
  });
}

// The ops page: its service rows again every OPS_POLL_MS from GET /api/ops (the same
// cells, and the console's badge class for the health), and each service's health in the
// topology.
const OPS_POLL_MS = 2000;

// A service's health in the topology: its class (the console's overview.css colours it)
// and the word in its badge.
const HEALTH = ["running", "stalled", "silent", "stopped", "erroring"];

function showHealth(name, status) {
  const node = document.querySelector(`svg.topology g.service[data-id="service:${CSS.escape(name)}"]`);
  if (!node) return;
  for (const word of HEALTH) node.classList.remove("health-" + word);
  node.classList.add("health-" + status);
  const text = node.querySelector(".badge-text");
  if (text) text.textContent = status;
}

function followOps() {
  const table = document.querySelector("table.ops");
  const live = document.getElementById("ops-live");
  if (!table || !live) return;
  const say = (ok, text) => {
    live.hidden = false;
    live.className = ok ? "live ok" : "live failing";
    live.textContent = text;
  };
  const poll = async () => {
    try {
      const res = await fetch("/api/ops", { headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error("the site answered " + res.status);
      const doc = await res.json();
      const found = new Map(doc.services.map((s) => [s.name, s]));
      for (const row of table.tBodies[0].rows) {
        const service = found.get(row.cells[0].textContent);
        if (!service) continue;
        for (const cell of row.querySelectorAll("[data-field]")) {
          const field = cell.dataset.field;
          if (field !== "status") {
            cell.textContent = service[field];
            continue;
          }
          const badge = cell.querySelector(".badge");
          badge.className = "badge status-" + service.status;
          badge.textContent = service.status;
        }
      }
      for (const service of doc.services) showHealth(service.name, service.status);
      say(true, "live: updated " + new Date().toLocaleTimeString());
    } catch (err) {
      say(false, "not updating: " + err.message);
    }
    setTimeout(poll, OPS_POLL_MS);
  };
  setTimeout(poll, OPS_POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  followOps();
  followStatus();
  followGallery();
  qualitySwitch();
  uploadForm();
  viewEvents();
  viewsChart();
});
