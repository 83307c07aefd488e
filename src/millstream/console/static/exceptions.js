// The Exceptions page: says when new exceptions arrived since it was drawn (fetched every
// 2 s); the list itself is drawn by the server, with its filters and counts.
"use strict";
(function () {
  const C = window.Console;
  document.addEventListener("DOMContentLoaded", () => {
    const data = C.pageData();
    if (!data) return;
    const note = document.getElementById("new-note");
    C.poll("/api/exceptions", (answer) => {
      const fresh = answer.total - data.total;
      C.text(note, fresh > 0 ? `${C.fmt.int(fresh)} new since this page was drawn: reload to see them` : "");
    });
  });
})();
