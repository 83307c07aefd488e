// The Overview page: keeps each edge's rate and each service's health live from
// /api/overview (every 2 s, Console.poll), without a reload. A changed topology (a service
// appeared or went) comes with its new drawing, which replaces the old one.
"use strict";
(function () {
  const graph = document.getElementById("graph");
  const table = document.querySelector("#services tbody");
  const summary = document.getElementById("summary");
  if (!graph) return;
  const HEALTH = ["running", "stalled", "silent", "stopped", "erroring"];

  function find(root, attr, value) {
    return root.querySelector(`[${attr}="${CSS.escape(value)}"]`);
  }

  function badge(status) {
    const span = document.createElement("span");
    span.className = `badge status-${status}`;
    span.textContent = status;
    return span;
  }

  function setHealth(node, status) {
    HEALTH.forEach((h) => node.classList.remove(`health-${h}`));
    node.classList.add(`health-${status}`);
    Console.text(node.querySelector(".badge-text"), status);
  }

  function row(name, svc) {
    let tr = find(table, "data-service", name);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.service = name;
      const link = document.createElement("a");
      link.href = svc.href;
      link.textContent = name;
      const cells = [link, svc.app, "health", "up", "rate_in", "rate_out", "lag", "errors", "exceptions"];
      cells.forEach((content, i) => {
        const td = document.createElement("td");
        if (i === 0) td.appendChild(content);
        else if (i === 1) td.textContent = content;
        else { td.dataset.field = content; if (i > 2) td.className = "num"; }
        tr.appendChild(td);
      });
      table.appendChild(tr);
    }
    const cell = (field) => tr.querySelector(`[data-field="${field}"]`);
    cell("health").replaceChildren(badge(svc.health));
    Console.text(cell("up"), `${svc.up} / ${svc.instances}`);
    Console.text(cell("rate_in"), svc.rate_in_text);
    Console.text(cell("rate_out"), svc.rate_out_text);
    Console.text(cell("lag"), Console.fmt.int(svc.lag));
    Console.text(cell("errors"), Console.fmt.int(svc.errors));
    Console.text(cell("exceptions"), Console.fmt.int(svc.exceptions));
  }

  function update(data) {
    if (data.graph !== undefined) {  // drawn and escaped by the server (observe._svg)
      graph.innerHTML = data.graph;
      graph.dataset.signature = data.signature;
      const empty = document.getElementById("empty");
      if (empty && Object.keys(data.services).length) empty.remove();
    }
    Object.entries(data.edges).forEach(([id, edge]) => {
      const g = find(graph, "data-id", id);
      if (!g) return;
      Console.text(g.querySelector(".rate"), edge.text);
      g.classList.toggle("flowing", Boolean(edge.rate));
    });
    const names = Object.keys(data.services);
    names.forEach((name) => {
      const svc = data.services[name];
      const node = find(graph, "data-id", `service:${name}`);
      if (node) setHealth(node, svc.health);
      if (table) row(name, svc);
    });
    if (table) {
      Array.from(table.rows).forEach((tr) => { if (!names.includes(tr.dataset.service)) tr.remove(); });
    }
    Console.text(summary, `${names.length} service${names.length === 1 ? "" : "s"}${data.apps ? ` of ${data.apps}` : ""}`);
    graph.dataset.updated = String(data.time_ms);
  }

  Console.poll(() => `/api/overview?have=${encodeURIComponent(graph.dataset.signature || "")}`, update);
})();
