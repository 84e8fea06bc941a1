// The run page while its run is in progress: ask for the turns after the last one shown, every
// 1.5 s, and append them. Text goes in through textContent only: model replies are never HTML.
(function () {
  "use strict";
  var body = document.body;
  var section = document.getElementById("transcript");
  if (!section || body.getAttribute("data-live") !== "1") { return; }
  var runId = section.getAttribute("data-run");
  var last = parseInt(section.getAttribute("data-last-turn"), 10) || 0;
  var phase = null;
  var phases = section.querySelectorAll("h3.phase");
  if (phases.length) { phase = phases[phases.length - 1].getAttribute("data-phase"); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function folded(summary, text, cls) {
    var details = el("details", cls);
    details.appendChild(el("summary", null, summary));
    details.appendChild(el("pre", null, text));
    return details;
  }

  function message(m) {
    var article = el("article", "msg " + (/^(pc[0-7]|user)$/.test(m.colour) ? m.colour : "pc7"));
    article.id = "turn-" + m.turn;
    article.setAttribute("data-turn", String(m.turn));
    var meta = el("div", "meta");
    var who = el("span", "who");
    var link = el("a", null, m.persona);
    link.href = "/runs/" + encodeURIComponent(runId) + "/turns/" + encodeURIComponent(m.turn);
    who.appendChild(link);
    meta.appendChild(who);
    meta.appendChild(document.createTextNode(" · turn " + m.turn + (m.phase ? " · " + m.phase : "")));
    if (m.truncated) { meta.appendChild(el("span", "badge cut", "cut at num_predict")); }
    if (m.attempts > 1) {
      meta.appendChild(el("span", "badge retry", "guard: attempt " + m.kept_attempt + " of " + m.attempts + " kept"));
    }
    article.appendChild(meta);
    article.appendChild(el("div", "text", m.content || "(empty reply)"));
    if (m.thinking) { article.appendChild(folded("thinking", m.thinking, "thinking")); }
    if (m.cut) { article.appendChild(folded("cut: went on as another persona", m.cut, "cut")); }
    return article;
  }

  function show(page) {
    page.messages.forEach(function (m) {
      if (m.turn <= last) { return; }
      // A line without a phase (User's input) stays under the current heading.
      if ((m.phase || "") !== phase && (m.phase || phase === null)) {
        phase = m.phase || "";
        var heading = el("h3", "phase", m.phase || "turns");
        heading.setAttribute("data-phase", m.phase || "");
        section.appendChild(heading);
      }
      section.appendChild(message(m));
      last = m.turn;
    });
    section.setAttribute("data-last-turn", String(last));
    var turns = document.getElementById("run-turns");
    if (turns) { turns.textContent = String(page.run.turns); }
    if (!page.live) {
      var badge = document.getElementById("live-badge");
      if (badge) { badge.textContent = page.run.status; badge.className = "badge " + page.run.status; }
      body.removeAttribute("data-live");
      return false;
    }
    return true;
  }

  function poll() {
    fetch("/runs/" + encodeURIComponent(runId) + "?format=json&after=" + last, {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (page === null || show(page)) { window.setTimeout(poll, 1500); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1500);
}());
