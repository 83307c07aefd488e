// The Streams pages: live counts on /streams, and on /streams/{name} the partitions' offsets
// and the live tail, fetched every 2 s. Records are built with textContent: never HTML.
"use strict";
(function () {
  const C = window.Console;

  function bytes(v) {  // as console/_render.fmt_bytes
    if (v === null || v === undefined) return "unknown";
    let size = Number(v);
    for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
      if (size < 1024 || unit === "TiB") return unit === "B" ? `${size.toFixed(0)} B` : `${size.toFixed(1)} ${unit}`;
      size /= 1024;
    }
    return "";
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setField(row, field, value) {
    const cell = row && row.querySelector(`[data-field="${field}"]`);
    if (cell) C.text(cell, value);
  }

  // One record as a row of table.records, as templates/_records.html draws it.
  function recordRow(r) {
    const tr = el("tr", "record");
    tr.dataset.partition = r.partition;
    tr.dataset.offset = r.offset;
    tr.appendChild(el("td", "pos mono", `[${r.partition}] @ ${r.offset}`));
    tr.appendChild(el("td", "time mono", r.time));
    const key = el("td", "key");
    if (r.key.kind === "none") key.appendChild(el("span", "muted", "none"));
    else {
      key.appendChild(el("code", `kind-${r.key.kind}`, r.key.text));
      if (r.key.kind === "hex") { key.appendChild(document.createTextNode(" ")); key.appendChild(el("span", "tag", "hex")); }
    }
    tr.appendChild(key);
    const value = el("td", "value");
    const about = el("div", "about");
    about.appendChild(el("span", `tag kind-${r.value.kind}`, r.value.kind));
    about.appendChild(document.createTextNode(" "));
    about.appendChild(el("span", "muted", bytes(r.value.size)));
    value.appendChild(about);
    if (r.value.kind === "none") value.appendChild(el("span", "muted", "null (tombstone)"));
    else {
      value.appendChild(el("pre", `payload value kind-${r.value.kind}`, r.value.text));
      if (r.value.cut) value.appendChild(el("p", "muted cut", `cut: ${r.value.note}`));
    }
    if (r.headers.length) {
      const details = el("details", "headers");
      details.appendChild(el("summary", "", `${r.headers.length} header${r.headers.length === 1 ? "" : "s"}`));
      const table = el("table", "headers");
      for (const h of r.headers) {
        const row = el("tr");
        row.appendChild(el("th", "mono", h.name));
        const cell = el("td");
        cell.appendChild(h.kind === "none" ? el("span", "muted", "none") : el("code", `kind-${h.kind}`, h.text));
        row.appendChild(cell);
        table.appendChild(row);
      }
      details.appendChild(table);
      value.appendChild(details);
    }
    tr.appendChild(value);
    tr.classList.add("fresh");
    return tr;
  }

  function updateStream(s) {
    for (const p of s.partitions) {
      const row = document.querySelector(`#partitions tr[data-partition="${p.partition}"]`);
      setField(row, "start", String(p.start));
      setField(row, "end", String(p.end));
      setField(row, "records", C.fmt.int(p.records));
      setField(row, "bytes", bytes(p.bytes));
    }
    C.text(document.querySelector('[data-total="records"]'), C.fmt.int(s.records));
    C.text(document.querySelector('[data-total="bytes"]'), bytes(s.bytes));
  }

  function streamPage(data) {
    const base = `/api/streams/${encodeURIComponent(data.stream)}`;
    if (data.mode !== "tail") {
      C.poll(base, (answer) => updateStream(answer.stream));
      return;
    }
    let after = data.after;
    let paused = false;
    const body = document.querySelector("#records tbody");
    const note = document.getElementById("tail-note");
    const pause = document.getElementById("pause");
    if (pause) pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      C.text(note, paused ? "paused: new records are not fetched" : "");
    });
    C.poll(() => paused ? base : `${base}?after=${encodeURIComponent(after)}`, (answer) => {
      updateStream(answer.stream);
      // paused: records of a fetch made before the pause are left for the resume to fetch
      if (answer.after === undefined || paused) return;
      after = answer.after;
      if (answer.records.length) {
        const empty = document.getElementById("empty");
        if (empty) empty.remove();
        for (const r of answer.records) body.insertBefore(recordRow(r), body.firstChild);
        while (body.children.length > data.max_rows) body.removeChild(body.lastChild);
      }
      if (answer.skipped) C.text(note, `${C.fmt.int(answer.skipped)} record(s) came too fast to show: browse them by offset`);
    });
  }

  function streamsPage() {
    C.poll("/api/streams", (answer) => {
      for (const s of answer.streams) {
        const row = document.querySelector(`#streams tr[data-stream="${CSS.escape(s.name)}"]`);
        setField(row, "partition_count", String(s.partition_count));
        setField(row, "records", C.fmt.int(s.records));
        setField(row, "bytes", bytes(s.bytes));
        setField(row, "retention", s.retention);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = C.pageData();
    if (data && data.stream !== undefined) streamPage(data);
    else if (document.getElementById("streams")) streamsPage();
  });
})();
