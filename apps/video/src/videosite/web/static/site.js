// The site's only script: live status on the gallery and video pages, the quality switch,
// and the upload form's progress. No inline scripts anywhere (the CSP forbids them).
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

document.addEventListener("DOMContentLoaded", () => {
  followStatus();
  qualitySwitch();
  uploadForm();
});
