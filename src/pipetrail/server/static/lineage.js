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

  const cy = cytoscape({
    container: container,
    elements: elements,
    layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1 },
    style: [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "font-size": 11,
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
        style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle" },
      },
    ],
  });
  window.pipetrailGraph = cy;

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
