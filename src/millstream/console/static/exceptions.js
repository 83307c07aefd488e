// The Exceptions page: says when new exceptions arrived since it was drawn (fetched every
// 2 s), with a link that draws the page again. The list itself, its counts and its replay
// forms stay as drawn: a replay takes only what the person saw (its form's `upto`).
"use strict";
(function () {
  const C = window.Console;
  document.addEventListener("DOMContentLoaded", () => {
    const data = C.pageData();
    if (!data) return;
    const note = document.getElementById("new-note");
    if (!note) return;
    const link = document.createElement("a");
    // the same filter, without the banner of a replay done before
    const params = new URLSearchParams(location.search);
    params.delete("replayed");
    params.delete("count");
    link.href = location.pathname + (params.size ? "?" + params : "");
    C.poll("/api/exceptions", (answer) => {
      const fresh = answer.total - data.total;
      if (fresh <= 0) return note.replaceChildren();
      link.textContent = `${C.fmt.int(fresh)} new since this page was drawn: show ${fresh === 1 ? "it" : "them"}`;
      note.replaceChildren(link);
    });
  });
})();
