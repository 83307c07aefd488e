// The Shadows list: each shadow's status, lag and promotion stay live (Console.poll every 2 s).
// Text only: values go in with textContent, never as HTML.
"use strict";
(function () {
  const C = window.Console;

  function badge(cell, status) {
    let el = cell.querySelector(".badge");
    if (!el) { cell.textContent = ""; el = document.createElement("span"); cell.appendChild(el); }
    el.className = `badge status-${status}`;
    el.textContent = status;
  }

  function update(data) {
    for (const s of data.shadows) {
      const row = document.querySelector(`tr[data-group="${CSS.escape(s.group)}"]`);
      if (!row) continue;
      badge(row.querySelector("[data-field=status]"), s.status);
      badge(row.querySelector("[data-field=production_status]"), s.production_status);
      C.text(row.querySelector("[data-field=lag]"), C.fmt.int(s.lag));
      C.text(row.querySelector("[data-field=promoted]"), s.promoted_ms ? C.fmt.time(s.promoted_ms) : "–");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = C.pageData();
    if (data && document.getElementById("shadows")) C.poll(data.api, update);
  });
})();
