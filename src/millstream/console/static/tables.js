// The Tables pages: the list's and a table's counts stay live (Console.poll every 2 s).
// Text only: values go in with textContent, never as HTML.
"use strict";
(function () {
  const C = window.Console;

  function behindText(t) {
    if (t.problem) return t.problem;
    if (t.behind === null || t.behind === undefined) return "–";
    return t.behind === 0 ? "up to date" : C.fmt.int(t.behind);
  }

  function behindBadge(cell, t) {
    let badge = cell.querySelector(".badge");
    if (t.behind === null && !t.problem) { cell.textContent = "–"; return; }
    if (!badge) { cell.textContent = ""; badge = document.createElement("span"); cell.appendChild(badge); }
    badge.className = "badge " + (t.problem ? "status-erroring" : t.behind === 0 ? "status-running" : "status-stalled");
    badge.textContent = behindText(t);
  }

  function updateList(data) {
    for (const t of data.tables) {
      const row = document.querySelector(`tr[data-table="${CSS.escape(t.name)}"]`);
      if (!row) continue;
      C.text(row.querySelector("[data-field=documents]"), C.fmt.int(t.documents));
      C.text(row.querySelector("[data-field=position]"), C.fmt.int(t.position));
      behindBadge(row.querySelector("[data-field=behind]"), t);
    }
  }

  function updateTable(t) {
    const cards = document.getElementById("table-cards");
    C.text(cards.querySelector("[data-field=documents]"), C.fmt.int(t.documents));
    C.text(cards.querySelector("[data-field=position]"), C.fmt.int(t.position));
    C.text(cards.querySelector("[data-field=behind]"), t.behind === 0 ? "0" : behindText(t));
    for (const p of t.partitions) {
      const row = document.querySelector(`#partitions tr[data-partition="${p.partition}"]`);
      if (!row) continue;
      C.text(row.querySelector("[data-field=offset]"), String(p.offset));
      C.text(row.querySelector("[data-field=end]"), String(p.end));
      C.text(row.querySelector("[data-field=behind]"), String(p.end - p.offset));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = C.pageData();
    if (!data) return;
    C.poll(data.api, document.getElementById("tables") ? updateList : updateTable);
  });
})();
