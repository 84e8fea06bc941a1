// The memory graph, drawn with cytoscape (vendored): pan, zoom, click a node for its text and
// the turns it came from. The data is the page's JSON block (#graph-data); labels are drawn on a
// canvas and the side panel is filled with textContent, so no model text is ever parsed as HTML.
(function () {
  "use strict";
  var holder = document.getElementById("graph");
  var source = document.getElementById("graph-data");
  if (!holder || !source || typeof cytoscape !== "function") { return; }
  var data = JSON.parse(source.textContent);
  var colours = {
    message: "#98a2b3", persona: "#fdb022", summary: "#32d583", fact: "#f97066",
    decision: "#ee46bc", question: "#528bff", document: "#d0d5dd", section: "#d0d5dd", chunk: "#d0d5dd"
  };
  function short(text) {
    text = String(text || "").replace(/\s+/g, " ");
    return text.length > 28 ? text.slice(0, 27) + "…" : text;
  }
  var elements = [];
  data.nodes.forEach(function (n) {
    var kind = n.kind === "summary" ? "summary L" + (n.level || 1) : n.kind;
    elements.push({group: "nodes", data: {
      id: "n" + n.id, nodeId: n.id, kind: n.kind, label: kind + ": " + short(n.text),
      colour: colours[n.kind] || "#d0d5dd", full: n
    }});
  });
  data.edges.forEach(function (e) {
    elements.push({group: "edges", data: {id: "e" + e.id, source: "n" + e.source, target: "n" + e.target, kind: e.kind}});
  });
  var cy = cytoscape({
    container: holder,
    elements: elements,
    style: [
      {selector: "node", style: {"background-color": "data(colour)", "label": "data(label)", "font-size": 9,
        "text-wrap": "ellipsis", "text-max-width": 140, "width": 18, "height": 18, "color": "#1d2330"}},
      {selector: "node[kind = 'persona']", style: {"shape": "round-rectangle", "width": 26}},
      {selector: "node[kind = 'summary']", style: {"shape": "rectangle", "width": 24, "height": 24}},
      {selector: "node[kind = 'decision']", style: {"shape": "octagon"}},
      {selector: "node[kind = 'question']", style: {"shape": "diamond"}},
      {selector: "node:selected", style: {"border-width": 3, "border-color": "#1d2330"}},
      {selector: "edge", style: {"width": 1, "line-color": "#c0c6d2", "target-arrow-color": "#c0c6d2",
        "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(kind)", "font-size": 7,
        "color": "#98a2b3", "text-rotation": "autorotate"}},
      {selector: "edge[kind = 'contradicts'], edge[kind = 'supersedes']", style: {"line-color": "#f04438", "target-arrow-color": "#f04438"}}
    ],
    layout: {name: "cose", animate: false, randomize: false, nodeRepulsion: 9000, idealEdgeLength: 60}
  });
  var info = document.getElementById("node-info");
  var runId = (document.getElementById("transcript") || holder).getAttribute("data-run") ||
    (location.pathname.match(/\/runs\/(\d+)/) || [])[1];
  var offline = location.protocol === "file:";
  function add(parent, tag, text, cls) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    node.textContent = text;
    parent.appendChild(node);
    return node;
  }
  cy.on("tap", "node", function (event) {
    var n = event.target.data("full");
    info.textContent = "";
    add(info, "h3", n.kind + (n.level ? " (level " + n.level + ")" : "") + " · node " + n.id);
    add(info, "div", n.text, "text");
    var turns = add(info, "p", n.turns.length ? "turns: " : "no source turns", "meta");
    n.turns.forEach(function (t, i) {
      if (offline || !runId) {
        turns.appendChild(document.createTextNode(String(t)));
      } else {
        var link = document.createElement("a");
        link.href = "/runs/" + encodeURIComponent(runId) + "/turns/" + encodeURIComponent(t);
        link.textContent = String(t);
        turns.appendChild(link);
      }
      if (i + 1 < n.turns.length) { turns.appendChild(document.createTextNode(", ")); }
    });
    if (n.closed) { add(info, "p", "closed: a later item superseded or contradicted it", "meta"); }
  });
  holder.setAttribute("data-drawn", String(cy.nodes().length));
  window.personaeGraph = cy;
}());
