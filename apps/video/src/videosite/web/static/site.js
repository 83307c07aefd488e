// The site's own script: live status on the gallery and video pages, the quality switch,
// the upload form's progress, the player's view events and the views-per-hour chart (drawn
// by uPlot, /static/vendor/, when the page loads it). No inline scripts anywhere (the CSP
// forbids them).
"use strict";

const STAGES = ["probe", "thumbnail", "transcode"];

function fraction(progress) {
  let sum = 0;
  for (const stage of STAGES) sum += progress[stage] ? progress[stage].fraction : 0;
  return sum / STAGES.length;
}

function followStatus() {
  const items = document.querySelectorAll("[data-video-id][data-status]");
  for (const item of items) {
    if (item.dataset.status === "ready" || item.dataset.status === "failed") continue;
    const poll = async () => {
      let doc;
      try {
        const res = await fetch("/api/videos/" + encodeURIComponent(item.dataset.videoId));
        if (!res.ok) return setTimeout(poll, 3000);
        doc = await res.json();
      } catch (err) { return setTimeout(poll, 3000); }
      item.dataset.status = doc.status;
      const label = item.classList.contains("status") ? item : item.querySelector(".status");
      const bar = item.querySelector("progress");
      const done = Math.round(fraction(doc.progress || {}) * 100);
      if (label) label.textContent = doc.status === "ready" || doc.status === "failed"
        ? doc.status : doc.status + " " + done + "%";
      if (bar) bar.value = fraction(doc.progress || {});
      if (doc.status === "ready" || doc.status === "failed") {
        if (bar) bar.remove();
        return;
      }
      setTimeout(poll, 1500);
    };
    poll();
  }
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
        out.textContent = "Refused (" + xhr.status + "): " + (doc.detail || xhr.statusText);
      }
    });
    xhr.addEventListener("error", () => { out.textContent = "The upload failed."; });
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
  const most = Math.max(1, ...data.views);
  const options = {
    width: Math.max(320, Math.min(box.clientWidth || 640, 900)), height: 180,
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
  new uPlot(options, [data.start.map((ms) => ms / 1000), data.views], box);
  box.classList.add("drawn");
}

document.addEventListener("DOMContentLoaded", () => {
  followStatus();
  qualitySwitch();
  uploadForm();
  viewEvents();
  viewsChart();
});
