// The dashboard's live parts: every POLL_MS, GET /api/dashboard (session cookie) and redraw the heads, the last
// failover and the timeline. Polling, not a stream: the console itself moves with the public alias when the
// active head dies, so a stream would break exactly when it matters; a poll simply succeeds again once the new
// head serves the console. Every text from the cluster goes in with textContent, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const live = document.getElementById("live-status");
  if (!live) {
    return;
  }

  function domid() {
    return Array.prototype.map.call(arguments, (p) => String(p).replace(/[^A-Za-z0-9_-]/g, "_")).join("-");
  }

  function when(wall) {
    if (wall === null || wall === undefined) {
      return "-";
    }
    return new Date(wall * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, value);
    }
    return node;
  }

  function setText(id, text) {
    const node = document.getElementById(id);
    if (node) {
      node.textContent = String(text);
    }
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
  }

  function row(cells, attrs) {
    const tr = el("tr", null, attrs);
    cells.forEach((cell, i) => tr.appendChild(el(i === 0 && cell.header ? "th" : "td", cell.text, cell.attrs)));
    return tr;
  }

  function table(caption, headers, rows) {
    const t = el("table", null, { class: "grid" });
    t.appendChild(el("caption", caption));
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h, { scope: "col" })));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    rows.forEach((r) => body.appendChild(r));
    return t;
  }

  function leaseText(h) {
    if (!h.witness) {
      return "no witness";
    }
    const own = h.lease_valid ? fixed(h.lease_remaining_s, 2) + " s left" : "none";
    return "holder " + (h.lease_holder || "nobody") + ", " + fixed(h.lease_holder_remaining_s || 0, 2) + " s left; own lease " + own;
  }

  function replicationText(h) {
    if (!h.replication_role) {
      return "off";
    }
    return h.replication_role + ", lag " + fixed(h.replication_lag_s || 0, 2) + " s, " + (h.files_pending || 0) +
      " files pending" + (h.replication_stale ? ", STALE" : "");
  }

  function headCard(h, first) {
    const card = el("article", null, { class: "head", id: domid("head", h.name), "aria-labelledby": domid("head", h.name, "title") });
    const title = card.appendChild(el("h3", h.name, { id: domid("head", h.name, "title") }));
    if (first) {
      title.appendChild(document.createTextNode(" "));
      title.appendChild(el("span", "(serving this console)", { class: "hint" }));
    }
    if (!h.reachable) {
      card.appendChild(el("p", "unreachable: " + h.error, { class: "error", id: domid("head", h.name, "error") }));
    }
    const dl = card.appendChild(el("dl"));
    const facts = [
      ["Role", h.state || "unknown", "role"],
      ["Configured as", h.role || "-", "config-role"],
      ["Holds the public alias", h.vip_held ? "yes" : "no", "vip"],
      ["Lease", leaseText(h), "lease"],
      ["Replication", replicationText(h), "replication"],
    ];
    facts.forEach(([label, text, key]) => {
      dl.appendChild(el("dt", label));
      dl.appendChild(el("dd", text, { id: domid("head", h.name, key) }));
    });
    dl.querySelector("#" + domid("head", h.name, "role")).setAttribute("data-state", h.state || "");
    if (h.networks.length) {
      const rows = h.networks.map((n) => row([
        { text: n.name, header: true, attrs: { scope: "row" } },
        { text: n.up ? "up" : "DOWN", attrs: { class: n.up ? "ok" : "bad" } },
        { text: n.last_heard_ms === null ? "never" : n.last_heard_ms + " ms ago" },
        { text: n.received },
        { text: n.loss === null ? "-" : (n.loss * 100).toFixed(1) + " %" },
      ], { id: domid("head", h.name, "net", n.name) }));
      card.appendChild(table("Heartbeats from " + h.peer_name, ["Network", "State", "Last heard", "Received", "Loss"], rows));
    }
    if (h.resources.length) {
      const rows = h.resources.map((r) => row([
        { text: r.name, header: true, attrs: { scope: "row" } }, { text: r.kind }, { text: r.state }, { text: r.restarts },
      ], { id: domid("head", h.name, "res", r.name) }));
      card.appendChild(table("Services on " + h.name, ["Service", "Kind", "State", "Restarts"], rows));
    }
    if (h.warnings.length) {
      const ul = card.appendChild(el("ul", null, { class: "warnings" }));
      h.warnings.forEach((w) => ul.appendChild(el("li", w)));
    }
    return card;
  }

  function drawHeads(data) {
    const box = document.getElementById("heads");
    const parts = [];
    if (data.error) {
      parts.push(el("p", data.error, { class: "error", id: "heads-error", role: "alert" }));
    }
    const active = el("p", "Active head: ");
    active.appendChild(el("strong", data.active || "none", { id: "active-head" }));
    parts.push(active);
    const grid = el("div", null, { class: "heads" });
    data.heads.forEach((h, i) => grid.appendChild(headCard(h, i === 0)));
    parts.push(grid);
    box.replaceChildren(...parts);
  }

  function drawLastFailover(last) {
    setText("last-failover-ms", last ? Number(last.took_ms).toFixed(0) : "-");
    setText("last-failover-since-dead-ms", last && last.since_dead_ms !== null ? Number(last.since_dead_ms).toFixed(0) : "-");
    setText("last-failover-kind", last ? last.kind : "none yet");
    setText("last-failover-node", last ? last.node : "-");
    setText("last-failover-at", last ? when(last.active_wall) : "-");
    setText("last-failover-reason", last ? last.reason : "-");
  }

  function fillBody(id, items, cells, empty, span) {
    const body = document.getElementById(id);
    if (!body) {
      return;
    }
    const rows = items.map((item) => row(cells(item).map((text) => ({ text: text }))));
    if (!rows.length) {
      const tr = el("tr");
      tr.appendChild(el("td", empty, { colspan: String(span) }));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function drawTimeline(tl) {
    fillBody("failovers-body", tl.failovers, (f) => [
      when(f.active_wall), f.kind, f.node, Number(f.took_ms).toFixed(0) + " ms",
      f.since_dead_ms === null ? "-" : Number(f.since_dead_ms).toFixed(0) + " ms", f.reason,
    ], "none recorded", 6);
    fillBody("refusals-body", tl.refusals, (r) => [
      when(r.wall), r.node, r.kind, r.cleared_wall ? when(r.cleared_wall) : (r.kind === "takeover.aborted" ? "-" : "standing"),
      r.message,
    ], "none recorded", 5);
    fillBody("events-body", tl.events, (e) => [when(e.wall), e.node, e.severity, e.kind, e.message], "no events stored", 5);
  }

  let failures = 0;
  let lastGood = Date.now() / 1000;

  function say(text) {
    if (live.textContent !== text) {
      live.textContent = text;
    }
  }

  async function poll() {
    try {
      const response = await fetch("/api/dashboard", { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.status === 401) {
        say("Your session ended: reload the page to log in again.");
        return;  // no more polling: a login is needed
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      lastGood = Date.now() / 1000;
      drawHeads(data);
      drawLastFailover(data.last_failover);
      drawTimeline(data.timeline);
      failures = 0;
      say("Live: updated every second.");
      setText("live-updated", "Last update " + when(Date.now() / 1000) + ".");
    } catch (err) {
      failures += 1;
      // The live region only changes when the state does, so a screen reader is not told every second.
      say("The console does not answer (" + err.message + "): during a failover it moves to the other head; retrying.");
      setText("live-updated", failures + " tries since " + when(lastGood) + ".");
    }
    window.setTimeout(poll, POLL_MS);
  }

  window.setTimeout(poll, POLL_MS);
})();
