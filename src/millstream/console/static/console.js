// The console's shared script (no inline script anywhere: the CSP forbids it).
// window.Console: poll(url, fn), chart(el, opts, data), fmt helpers, page data.
"use strict";
(function () {
  const body = () => document.body;
  const pollMs = () => Number(body().dataset.pollMs || 2000);

  // Fetch url as JSON now and every pollMs; fn(data) gets each answer. An error is shown in
  // the page's status line (an element with [data-live-status]) and retried.
  function poll(url, fn, ms) {
    let stopped = false;
    const status = document.querySelector("[data-live-status]");
    async function tick() {
      if (stopped) return;
      try {
        const answer = await fetch(typeof url === "function" ? url() : url,
                                   { headers: { accept: "application/json" }, cache: "no-store" });
        if (!answer.ok) throw new Error(`${answer.status} ${answer.statusText}`);
        fn(await answer.json());
        if (status) { status.textContent = "live"; status.className = "live ok"; }
      } catch (err) {
        if (status) { status.textContent = `not updating: ${err.message}`; status.className = "live failing"; }
      }
      setTimeout(tick, ms || pollMs());
    }
    tick();
    return () => { stopped = true; };
  }

  // The data a page passes to its script: <script type="application/json" id="page-data">.
  function pageData(id) {
    const el = document.getElementById(id || "page-data");
    return el ? JSON.parse(el.textContent) : null;
  }

  // A uPlot chart filling el's width. series: [{label, stroke}], data: [xs, ys...].
  // The chart keeps its data on el.chartData (what the tests read) and el.chart.
  const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  function chart(el, opts, data) {
    const width = () => Math.max(el.clientWidth || 300, 200);
    const series = [{}].concat((opts.series || []).map((s, i) => Object.assign(
      { stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: false } }, s)));
    const plot = new uPlot(Object.assign({
      width: width(), height: opts.height || 200, series: series,
      axes: [{}, { size: 60, values: opts.yValues }],
      scales: { x: { time: true } }, legend: { live: false },
    }, opts.uplot || {}), data, el);
    el.chart = plot;
    el.chartData = data;
    const resize = () => plot.setSize({ width: width(), height: opts.height || 200 });
    window.addEventListener("resize", resize);
    return {
      plot: plot,
      set(newData) { el.chartData = newData; plot.setData(newData); },
    };
  }

  const fmt = {
    rate(v) {
      if (v === null || v === undefined) return "–";
      if (v === 0) return "0/s";
      if (v < 10) return `${v.toFixed(1)}/s`;
      if (v < 1000) return `${Math.round(v)}/s`;
      if (v < 1e6) return `${(v / 1000).toFixed(1)}K/s`;
      return `${(v / 1e6).toFixed(1)}M/s`;
    },
    ms(v) { return v === null || v === undefined ? "–" : `${v < 10 ? v.toFixed(2) : v.toFixed(0)} ms`; },
    int(v) { return v === null || v === undefined ? "–" : Number(v).toLocaleString("en"); },
    time(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 19); },
  };

  // uPlot options for a time axis that ticks whole seconds at the least (a short history
  // would tick every 0.2 s), and a y axis 60 px wide showing values with yValues.
  const X_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];
  const axes = (yValues) => ({ axes: [{ incrs: X_INCRS }, { size: 60, values: yValues }] });

  // Sorts "stream/partition" names by stream, then by partition number.
  function partitionKey(name) {
    const cut = name.lastIndexOf("/");
    return [name.slice(0, cut), Number(name.slice(cut + 1))];
  }
  function byPartition(a, b) {
    const [sa, pa] = partitionKey(a), [sb, pb] = partitionKey(b);
    return sa < sb ? -1 : sa > sb ? 1 : pa - pb;
  }

  // Text into an element: never HTML.
  function text(el, value) { if (el) el.textContent = value; }

  // A confirmation input enables its form's button only when it holds the expected word.
  function armConfirmations() {
    document.querySelectorAll("input[data-expect]").forEach((input) => {
      const button = input.form && input.form.querySelector("button[type=submit]");
      if (!button) return;
      const check = () => { button.disabled = input.value.trim() !== input.dataset.expect; };
      input.addEventListener("input", check);
      check();
    });
  }
  document.addEventListener("DOMContentLoaded", armConfirmations);

  window.Console = { poll, pageData, chart, fmt, text, PALETTE, axes, byPartition };
})();
