// The Service page: four uPlot charts over the kept history, kept live. Every poll asks
// /api/services/<group>?since=<a few buckets back> for the newest buckets, replaces the
// chart's points from there on (the server recomputes a bucket while records that cover it
// still arrive) and appends the rest; the cards and tables are refilled from the same answer.
// The merged series is window.servicePage.series; each chart's data is el.chart.data.
"use strict";
(function () {
  const REPLACE = 5; // buckets re-asked every poll: the last ones may still change
  const { axes, byPartition } = Console;

  // base's points before `since`, then all of tail's (same bucket width).
  function merge(base, tail, since) {
    let cut = base.times.findIndex((t) => t >= since);
    if (cut < 0) cut = base.times.length;
    const take = (a, b) => a.slice(0, cut).concat(b);
    const nulls = (n) => new Array(n).fill(null);
    const out = { bucket_s: base.bucket_s, times: take(base.times, tail.times), rates: {},
                  p50_ms: take(base.p50_ms, tail.p50_ms), p99_ms: take(base.p99_ms, tail.p99_ms), lag: {} };
    for (const name of Object.keys(base.rates)) out.rates[name] = take(base.rates[name], tail.rates[name]);
    const names = new Set(Object.keys(base.lag).concat(Object.keys(tail.lag)));
    for (const name of names) {
      out.lag[name] = take(base.lag[name] || nulls(base.times.length), tail.lag[name] || nulls(tail.times.length));
    }
    return out;
  }

  // Drop the points before the kept window's first bucket.
  function trim(series, startS) {
    const first = Math.floor(startS / series.bucket_s) * series.bucket_s;
    const cut = series.times.findIndex((t) => t >= first);
    if (cut <= 0) return series;
    const drop = (a) => a.slice(cut);
    const out = { bucket_s: series.bucket_s, times: drop(series.times), rates: {},
                  p50_ms: drop(series.p50_ms), p99_ms: drop(series.p99_ms), lag: {} };
    for (const [k, v] of Object.entries(series.rates)) out.rates[k] = drop(v);
    for (const [k, v] of Object.entries(series.lag)) out.lag[k] = drop(v);
    return out;
  }

  const bytes = (n) => {
    if (n === null || n === undefined) return "–";
    let size = n;
    for (const unit of ["B", "KiB", "MiB", "GiB"]) {
      if (size < 1024 || unit === "GiB") return unit === "B" ? `${size} B` : `${size.toFixed(1)} ${unit}`;
      size /= 1024;
    }
    return `${n} B`;
  };
  const axis = (fmt) => (u, splits) => splits.map((v) => (v === null ? "" : fmt(v)));
  const count = (v) => (Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(1)}K` : `${+v.toFixed(2)}`);

  function cell(row, value, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = value;
    row.appendChild(td);
    return td;
  }
  function badge(status) {
    const span = document.createElement("span");
    span.className = `badge status-${status}`;
    span.textContent = status;
    return span;
  }

  function start() {
    const data = Console.pageData();
    if (!data || typeof uPlot === "undefined") return;
    let series = data.answer.series;
    const charts = {};
    const rows = {
      rates: (s) => [s.times, s.rates.in, s.rates.out],
      latency: (s) => [s.times, s.p50_ms, s.p99_ms],
      errors: (s) => [s.times, s.rates.errors, s.rates.exceptions],
      lag: (s) => [s.times].concat(Object.keys(s.lag).sort(byPartition).map((k) => s.lag[k])),
    };
    const options = {
      rates: { series: [{ label: "in" }, { label: "out", dash: [6, 4] }], yValues: axis((v) => Console.fmt.rate(v)) },
      // a bucket that timed no record has no point: the line joins its neighbours, and the
      // points show where the values are (the runtime times fast records one in many)
      latency: { series: [{ label: "p50", spanGaps: true, points: { show: true, size: 5 } },
                          { label: "p99", stroke: "#ea580c", spanGaps: true, points: { show: true, size: 5 } }],
                 yValues: axis((v) => `${+v.toFixed(3)}`) },
      errors: { series: [{ label: "errors", stroke: "#dc2626" }, { label: "exceptions", stroke: "#9333ea" }],
                yValues: axis((v) => Console.fmt.rate(v)) },
    };
    let lagNames = "";

    function draw(name, s) {
      const el = document.getElementById(`chart-${name}`);
      let opts = options[name];
      if (name === "lag") {
        const names = Object.keys(s.lag).sort(byPartition);
        if (charts.lag && names.join("\n") === lagNames) { charts.lag.set(rows.lag(s)); return; }
        lagNames = names.join("\n");
        opts = { series: names.map((label) => ({ label })), yValues: axis(count) };
        if (charts.lag) { charts.lag.plot.destroy(); el.textContent = ""; }
        charts.lag = Console.chart(el, Object.assign({ height: 220, uplot: axes(opts.yValues) }, opts), rows.lag(s));
        return;
      }
      if (charts[name]) charts[name].set(rows[name](s));
      else charts[name] = Console.chart(el, Object.assign({ height: 220, uplot: axes(opts.yValues) }, opts), rows[name](s));
    }
    function drawAll() { for (const name of ["rates", "latency", "lag", "errors"]) draw(name, series); }

    function fill(answer) {
      const s = answer.summary;
      const set = (field, value) => Console.text(document.querySelector(`[data-field=${field}]`), value);
      set("rate_in", Console.fmt.rate(s.rate_in));
      set("rate_out", Console.fmt.rate(s.rate_out));
      set("p50_ms", s.p50_ms === null ? "–" : `${s.p50_ms.toFixed(2)} ms`);
      set("p99_ms", s.p99_ms === null ? "–" : `${s.p99_ms.toFixed(2)} ms`);
      set("lag", Console.fmt.int(s.lag));
      set("errors", String(s.errors));
      set("alive", `${s.alive} / ${s.instances}`);
      set("state_bytes", answer.state.partitions.length ? bytes(answer.state.bytes) : "–");
      set("bucket_s", String(Math.round(answer.series.bucket_s)));
      const status = document.getElementById("service-status");
      status.replaceChildren(badge(answer.status));

      const instances = document.querySelector("#instances tbody");
      instances.replaceChildren(...answer.instances.map((i) => {
        const row = document.createElement("tr");
        cell(row, i.instance, "mono");
        cell(row, i.run, "mono");
        cell(row, i.version || "–");
        cell(row, "").appendChild(badge(i.status));
        cell(row, i.started_ms ? Console.fmt.time(i.started_ms) : "–");
        cell(row, Console.fmt.time(i.seen_ms));
        cell(row, Console.fmt.int(i.records_in), "num");
        cell(row, i.assigned.join(", ") || "–", "mono");
        return row;
      }));
      const partitions = document.querySelector("#partitions tbody");
      if (answer.partitions.length) {
        partitions.replaceChildren(...answer.partitions.map((p) => {
          const row = document.createElement("tr");
          cell(row, p.partition, "mono");
          cell(row, p.owner || "–", "mono");
          cell(row, Console.fmt.int(p.lag), "num");
          return row;
        }));
      }
    }

    drawAll();
    window.servicePage = { series: series, charts: charts };
    Console.poll(() => {
      const last = series.times.length ? series.times[series.times.length - 1] : null;
      if (last === null) return data.api;
      return `${data.api}?since=${last - (REPLACE - 1) * series.bucket_s}`;
    }, (answer) => {
      const tail = answer.series;
      if (tail.bucket_s !== series.bucket_s) {
        // the metrics interval changed: start again, the next poll asks for every bucket
        series = { bucket_s: tail.bucket_s, times: [], p50_ms: [], p99_ms: [], lag: {},
                   rates: { in: [], out: [], errors: [], exceptions: [] } };
      } else if (tail.times.length) {
        series = merge(series, tail, tail.times[0]);
      }
      series = trim(series, answer.start_s);
      window.servicePage.series = series;
      drawAll();
      fill(answer);
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
