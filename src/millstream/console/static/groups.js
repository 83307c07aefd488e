// The groups list, refilled from /api/groups every poll; and a group's page: the
// lag-per-partition chart and the tables, kept live. For a service's
// group the chart is its metrics records' lag (the server's buckets: each poll asks for the
// last few again with ?since= and replaces them, appending the new ones); for any other group
// each poll adds one sample of the lag the group's offsets show now. The chart's data is
// el.chart.data; the merged lag series is window.groupPage.series.
"use strict";
(function () {
  const REPLACE = 5;
  const { axes, byPartition } = Console;
  const nulls = (n) => new Array(n).fill(null);

  // base's points before tail's first, then tail's; partitions missing on a side are nulls.
  function merge(base, tail) {
    let cut = tail.times.length ? base.times.findIndex((t) => t >= tail.times[0]) : -1;
    if (cut < 0) cut = base.times.length;
    const out = { bucket_s: base.bucket_s, times: base.times.slice(0, cut).concat(tail.times), lag: {} };
    for (const name of new Set(Object.keys(base.lag).concat(Object.keys(tail.lag)))) {
      out.lag[name] = (base.lag[name] || nulls(base.times.length)).slice(0, cut)
        .concat(tail.lag[name] || nulls(tail.times.length));
    }
    return out;
  }
  function trim(series, startS) {
    const first = Math.floor(startS / series.bucket_s) * series.bucket_s;
    const cut = series.times.findIndex((t) => t >= first);
    if (cut <= 0) return series;
    const out = { bucket_s: series.bucket_s, times: series.times.slice(cut), lag: {} };
    for (const [k, v] of Object.entries(series.lag)) out.lag[k] = v.slice(cut);
    return out;
  }
  // One sample of the lag the offsets show now (a group that writes no metrics).
  function sample(series, answer) {
    const tail = { times: [Date.now() / 1000], lag: {} };
    for (const p of answer.partitions) tail.lag[`${p.stream}/${p.partition}`] = [p.lag];
    return merge(series, tail);
  }

  function cell(row, value, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = value;
    row.appendChild(td);
  }
  const dash = (v) => (v === null || v === undefined ? "–" : String(v));

  function start() {
    const data = Console.pageData();
    if (!data || typeof uPlot === "undefined") return;
    const fromMetrics = data.answer.series !== null;
    let series = fromMetrics ? data.answer.series : sample({ bucket_s: 1, times: [], lag: {} }, data.answer);
    const el = document.getElementById("chart-lag");
    let chart = null, names = "";
    const count = (v) => (Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(1)}K` : `${+v.toFixed(2)}`);

    function draw() {
      const keys = Object.keys(series.lag).sort(byPartition);
      const rows = [series.times].concat(keys.map((k) => series.lag[k]));
      if (chart && keys.join("\n") === names) { chart.set(rows); return; }
      names = keys.join("\n");
      if (chart) { chart.plot.destroy(); el.textContent = ""; }
      const yValues = (u, splits) => splits.map(count);
      chart = Console.chart(el, { height: 240, series: keys.map((label) => ({ label })), yValues,
                                  uplot: axes(yValues) }, rows);
    }

    function fill(answer) {
      Console.text(document.querySelector("[data-field=members]"), String(answer.members.length));
      Console.text(document.querySelector("[data-field=lag]"), Console.fmt.int(answer.lag));
      document.querySelector("#partitions tbody").replaceChildren(...answer.partitions.map((p) => {
        const row = document.createElement("tr");
        cell(row, p.stream, "mono"); cell(row, p.partition, "num"); cell(row, dash(p.committed), "num");
        cell(row, p.start, "num"); cell(row, p.end, "num"); cell(row, Console.fmt.int(p.lag), "num");
        cell(row, p.owner || "–", "mono");
        return row;
      }));
      const members = document.querySelector("#members tbody");
      if (answer.members.length) {
        members.replaceChildren(...answer.members.map((m) => {
          const row = document.createElement("tr");
          cell(row, m.member, "mono"); cell(row, m.client || "–", "mono");
          cell(row, m.partitions.join(", ") || "–", "mono");
          return row;
        }));
      } else {
        const row = document.createElement("tr");
        cell(row, "none: the group is stopped, its offsets can be reset", "muted");
        row.firstChild.colSpan = 3;
        members.replaceChildren(row);
      }
    }

    draw();
    window.groupPage = { series: series, chart: () => chart };
    Console.poll(() => {
      if (!fromMetrics || !series.times.length) return data.api;
      return `${data.api}?since=${series.times[series.times.length - 1] - (REPLACE - 1) * series.bucket_s}`;
    }, (answer) => {
      if (fromMetrics && answer.series) {
        const tail = answer.series;
        series = tail.bucket_s !== series.bucket_s ? { bucket_s: tail.bucket_s, times: [], lag: {} } : merge(series, tail);
        series = trim(series, answer.start_s);
      } else if (!fromMetrics) {
        series = sample(series, answer);
      }
      window.groupPage.series = series;
      draw();
      fill(answer);
    });
  }

  // The time-or-offset field is for "time" and "offset" only.
  function valueField() {
    const to = document.querySelector("form.action select[name=to]");
    const value = document.querySelector("form.action input[name=value]");
    if (!to || !value) return;
    const sync = () => {
      value.disabled = to.value !== "time" && to.value !== "offset";
      value.placeholder = to.value === "time" ? "2026-12-06T17:00 (UTC) or 30m ago"
        : to.value === "offset" ? "an offset, e.g. 1500" : "not needed";
    };
    to.addEventListener("change", sync);
    sync();
  }

  // The list of groups (/groups): its rows from each poll's answer.
  function list() {
    const body = document.querySelector("#groups tbody");
    if (!body) return;
    const empty = body.querySelector("tr.empty");
    const emptyRow = empty ? empty.cloneNode(true) : null;
    Console.poll("/api/groups", (answer) => {
      Console.text(document.querySelector("[data-field=count]"), String(answer.groups.length));
      if (!answer.groups.length) { if (emptyRow) body.replaceChildren(emptyRow.cloneNode(true)); return; }
      body.replaceChildren(...answer.groups.map((g) => {
        const row = document.createElement("tr");
        row.dataset.group = g.group;
        const name = document.createElement("a");
        name.className = "mono";
        name.href = `/groups/${encodeURIComponent(g.group)}`;
        name.textContent = g.group;
        const first = document.createElement("td");
        first.appendChild(name);
        row.appendChild(first);
        cell(row, String(g.members), "num");
        cell(row, g.streams.join(", ") || "–", "mono");
        cell(row, Console.fmt.int(g.lag), "num");
        const last = document.createElement("td");
        if (g.service) {
          const link = document.createElement("a");
          link.href = `/services/${encodeURIComponent(g.group)}`;
          link.textContent = "charts";
          last.appendChild(link);
        } else {
          const none = document.createElement("span");
          none.className = "muted";
          none.textContent = "–";
          last.appendChild(none);
        }
        row.appendChild(last);
        return row;
      }));
    });
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("DOMContentLoaded", valueField);
  document.addEventListener("DOMContentLoaded", list);
})();
