// The lineage page: draws the graph the server embedded (cytoscape.js), and shows the
// record of a node when it is clicked or chosen in the table. No inline script: the
// page's Content-Security-Policy allows scripts from this server only.
(function () {
  "use strict";
  const source = document.getElementById("lineage-data");
  const container = document.getElementById("graph");
  const panel = document.getElementById("record");
  if (!source || !container || !panel || typeof cytoscape !== "function") {
    return;
  }
  const data = JSON.parse(source.textContent);
  const byId = new Map(data.nodes.map((n) => [n.id, n]));

  function label(n) {
    if (n.kind === "artifact") {
      const name = n.paths && n.paths.length ? n.paths[0] : n.role;
      return name + " " + n.id.slice(7, 15);
    }
    return n.node_id + " (" + n.status + ")";
  }

  const elements = data.nodes.map((n) => ({
    group: "nodes",
    data: { id: n.id, label: label(n), kind: n.kind },
  }));
  data.edges.forEach((e, i) => {
    if (byId.has(e.source) && byId.has(e.target)) {
      elements.push({ group: "edges", data: { id: "e" + i, source: e.source, target: e.target } });
    }
  });

  // Columns by lineage depth (the query's distance from the node asked about): the node
  // itself on the right for provenance (on the left for impact), sources at the far end.
  // Within a column, nodes follow the mean row of their neighbours in the previous column
  // (fewer crossings); a column taller than MAX_ROWS wraps into sub-columns. Linear in
  // the graph's size, where a general layout is not.
  function layered(graph) {
    const MAX_ROWS = 40;
    const STEP_X = 200;
    const STEP_Y = 44;
    const sign = graph.direction === "downstream" ? 1 : -1;
    const columns = new Map();
    graph.nodes.forEach((n) => {
      const depth = Number.isFinite(n.depth) ? n.depth : 0;
      if (!columns.has(depth)) {
        columns.set(depth, []);
      }
      columns.get(depth).push(n.id);
    });
    const neighbours = new Map();
    graph.edges.forEach((e) => {
      [[e.source, e.target], [e.target, e.source]].forEach(([a, b]) => {
        if (!neighbours.has(a)) {
          neighbours.set(a, []);
        }
        neighbours.get(a).push(b);
      });
    });
    const row = new Map();
    const positions = {};
    let x = 0;
    [...columns.keys()].sort((a, b) => a - b).forEach((depth) => {
      const ids = columns.get(depth);
      const score = new Map(ids.map((id, i) => {
        const rows = (neighbours.get(id) || []).filter((o) => row.has(o)).map((o) => row.get(o));
        return [id, rows.length ? rows.reduce((s, r) => s + r, 0) / rows.length : i];
      }));
      ids.sort((a, b) => score.get(a) - score.get(b));
      const wraps = Math.ceil(ids.length / MAX_ROWS);
      const tall = Math.min(ids.length, MAX_ROWS);
      ids.forEach((id, i) => {
        const sub = Math.floor(i / MAX_ROWS);
        const r = i % MAX_ROWS;
        row.set(id, i);
        positions[id] = {
          x: sign * (x + sub * STEP_X * 0.6),
          y: (r - (tall - 1) / 2) * STEP_Y + (sub % 2) * STEP_Y * 0.5,
        };
      });
      x += STEP_X + (wraps - 1) * STEP_X * 0.6;
    });
    return positions;
  }

  const cy = cytoscape({
    container: container,
    elements: elements,
    layout: { name: "preset", positions: layered(data), fit: true, padding: 20 },
    // Large graphs stay fluid: labels too small to read are not drawn, and while the
    // view moves the last frame is reused as a picture.
    textureOnViewport: data.nodes.length > 300,
    hideEdgesOnViewport: data.nodes.length > 300,
    style: [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "font-size": 11,
          "min-zoomed-font-size": 7,
          "text-valign": "bottom",
          "text-margin-y": 4,
          "background-color": "#1f3a5f",
          width: 18,
          height: 18,
        },
      },
      { selector: "node[kind = 'artifact']", style: { shape: "round-rectangle", "background-color": "#2e7d32" } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": "#f5a300" } },
      {
        selector: "edge",
        style: {
          width: 1.5,
          // Straight edges cost far less to draw than curved ones in a large graph.
          "curve-style": data.nodes.length > 300 ? "straight" : "bezier",
          "target-arrow-shape": "triangle",
        },
      },
    ],
  });
  window.pipetrailGraph = cy;
  // Once the first frame with the laid-out graph is painted, say when (milliseconds since
  // the page's navigation started): tests and benchmarks/lineage_page.py read it.
  cy.ready(function () {
    requestAnimationFrame(function () {
      requestAnimationFrame(function () {
        container.dataset.drawnAt = String(performance.now());
        container.dataset.drawnNodes = String(cy.nodes().length);
      });
    });
  });

  function row(list, name, value) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
    list.append(dt, dd);
  }

  function link(text, href) {
    const a = document.createElement("a");
    a.textContent = text;
    a.href = href;
    const p = document.createElement("p");
    p.append(a);
    return p;
  }

  function show(id) {
    const n = byId.get(id);
    if (!n) {
      return;
    }
    panel.replaceChildren();
    const heading = document.createElement("h2");
    heading.textContent = n.kind === "artifact" ? "Artifact" : "Step run";
    const list = document.createElement("dl");
    for (const [key, value] of Object.entries(n)) {
      if (value !== null && value !== "" && key !== "id") {
        row(list, key, value);
      }
    }
    panel.append(heading, list);
    const ref = encodeURIComponent(n.kind === "artifact" ? n.id : n.step_run_id);
    panel.append(link("Upstream of this", "/lineage?direction=up&ref=" + ref));
    panel.append(link("Downstream of this", "/lineage?direction=down&ref=" + ref));
    if (n.run_id) {
      panel.append(link("Its run", "/runs/" + encodeURIComponent(n.run_id)));
    }
    cy.$(":selected").unselect();
    cy.getElementById(id).select();
  }

  cy.on("tap", "node", (event) => show(event.target.id()));
  document.querySelectorAll("button[data-node]").forEach((button) => {
    button.addEventListener("click", () => show(button.dataset.node));
  });
})();
