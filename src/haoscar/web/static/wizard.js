// The wizard's live parts: unknown MACs as they ask for DHCP, install progress, a long job's progress.
// Progressive: every page shows the state and works without this file (forms post, pages reload).
// Network text (MACs, DHCP host names, installer messages) only ever goes in through textContent.
"use strict";

(function () {
  function byId(id) { return document.getElementById(id); }
  function macId(mac) { return String(mac).replace(/[^0-9A-Za-z]/g, "-"); }
  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) { td.className = cls; }
    return td;
  }
  function hidden(name, value) {
    var input = document.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    return input;
  }
  function token() { return window.haoscar ? window.haoscar.csrfToken() : ""; }

  function liveNote(table, text) {
    var id = table.id + "-live";
    var note = byId(id);
    if (!note) {
      note = document.createElement("p");
      note.id = id; note.setAttribute("role", "status");
      table.parentNode.insertBefore(note, table.nextSibling);
    }
    note.textContent = text;
  }

  // ---- MACs ----------------------------------------------------------------------------------------------
  var free = null;

  function fillSelect(select, index) {
    if (!free) { return; }
    var keep = select.value;
    while (select.firstChild) { select.removeChild(select.firstChild); }
    free.forEach(function (name, i) {
      var option = document.createElement("option");
      option.value = name; option.textContent = name;
      if (keep ? name === keep : i === index) { option.selected = true; }
      select.appendChild(option);
    });
  }

  function refreshSelects() {
    var rows = document.querySelectorAll("#sightings-body tr");
    rows.forEach(function (row, index) {
      var select = row.querySelector("select");
      if (select) { fillSelect(select, index); }
    });
    var list = byId("free-nodes");
    if (list && free) { list.textContent = free.length ? free.join(", ") : "none"; }
  }

  function assignForm(mac) {
    var form = document.createElement("form");
    form.method = "post"; form.action = "/wizard/macs"; form.className = "assign-row";
    form.appendChild(hidden("csrf_token", token()));
    form.appendChild(hidden("form", "assign"));
    form.appendChild(hidden("mac", mac));
    var select = document.createElement("select");
    select.name = "node"; select.id = "assign-node-" + macId(mac);
    select.setAttribute("aria-label", "Node for " + mac);
    form.appendChild(select);
    var button = document.createElement("button");
    button.type = "submit"; button.className = "assign-button"; button.id = "assign-" + macId(mac);
    button.textContent = "Assign";
    form.appendChild(document.createTextNode(" "));
    form.appendChild(button);
    return form;
  }

  function sighting(data) {
    var body = byId("sightings-body");
    var row = byId("mac-" + macId(data.mac));
    if (!row) {
      row = document.createElement("tr");
      row.id = "mac-" + macId(data.mac);
      row.setAttribute("data-mac", data.mac);
      [data.index, data.mac, data.interface, data.message_type, data.client_arch, data.seen_count].forEach(
        function (value, i) { row.appendChild(cell(value, ["", "mac", "", "", "", "seen"][i])); });
      var td = document.createElement("td");
      td.appendChild(assignForm(data.mac));
      row.appendChild(td);
      body.appendChild(row);
      var none = byId("no-sightings");
      if (none) { none.parentNode.removeChild(none); }
      refreshSelects();
    } else {
      var cells = row.querySelectorAll("td");
      cells[3].textContent = data.message_type;
      cells[5].textContent = String(data.seen_count);
    }
  }

  function gone(data) {
    var row = byId("mac-" + macId(data.key));
    if (row) { row.parentNode.removeChild(row); refreshSelects(); }
  }

  function listen(table, handlers) {
    if (!window.EventSource) { return; }
    var source = new EventSource(table.getAttribute("data-live"));
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        var data;
        try { data = JSON.parse(message.data); } catch (e) { return; }
        handlers[kind](data);
      });
    });
    source.addEventListener("end", function (message) {
      source.close();
      var why = "";
      try { why = JSON.parse(message.data).reason; } catch (e) { why = ""; }
      liveNote(table, "Live updates stopped: " + why + ". Reload the page.");
    });
    source.addEventListener("open", function () { liveNote(table, "Live: updates appear as they happen."); });
  }

  // ---- installs ------------------------------------------------------------------------------------------
  function install(data) {
    var body = byId("installs-body");
    var row = byId("install-" + data.node);
    if (!row) {
      row = document.createElement("tr");
      row.id = "install-" + data.node;
      row.appendChild(cell(data.node));
      row.appendChild(cell("", "state"));
      row.appendChild(cell("", "stage"));
      var td = document.createElement("td");
      var bar = document.createElement("progress");
      bar.max = 100; bar.id = "progress-" + data.node;
      bar.setAttribute("aria-label", "Install progress of " + data.node);
      var pct = document.createElement("span"); pct.className = "percent";
      td.appendChild(bar); td.appendChild(document.createTextNode(" ")); td.appendChild(pct);
      row.appendChild(td);
      row.appendChild(cell("", "rate"));
      row.appendChild(cell("", "detail"));
      body.appendChild(row);
    }
    row.querySelector(".state").textContent = data.install_state;
    row.querySelector(".stage").textContent = data.stage || "-";
    var progress = row.querySelector("progress");
    var done = data.install_state === "installed" || data.install_state === "up";
    if (data.percent !== null && data.percent !== undefined) { progress.value = data.percent; }
    else if (done) { progress.value = 100; }
    row.querySelector(".percent").textContent =
      data.percent !== null && data.percent !== undefined ? data.percent + "%" : "";
    row.querySelector(".rate").textContent = data.mb_per_s === null || data.mb_per_s === undefined ? "-" : data.mb_per_s;
    row.querySelector(".detail").textContent = data.reason || data.detail || "";
  }

  function installGone(data) {
    var row = byId("install-" + data.key);
    if (row) { row.parentNode.removeChild(row); }
  }

  // ---- a long job ----------------------------------------------------------------------------------------
  function followJob(step) {
    var timer = window.setInterval(function () {
      fetch("/api/wizard/" + encodeURIComponent(step) + "/job", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (!job) { return; }
          var bar = byId("job-progress");
          if (bar && job.percent !== null) { bar.value = job.percent; }
          if (byId("job-what")) { byId("job-what").textContent = job.what || ""; }
          if (byId("job-state")) { byId("job-state").textContent = job.state; }
          var lines = byId("job-lines");
          if (lines) { lines.textContent = (job.lines || []).join("\n"); }
          if (job.state !== "running") { window.clearInterval(timer); window.location.reload(); }
        })
        .catch(function () { window.clearInterval(timer); });
    }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var macs = byId("sightings");
    if (macs) {
      listen(macs, { sighting: sighting, gone: gone, free: function (d) { free = d.free; refreshSelects(); } });
    }
    var installs = byId("installs");
    if (installs) { listen(installs, { install: install, gone: installGone }); }
    var body = byId("wizard-step");
    if (body && body.getAttribute("data-job-running") === "yes") { followJob(body.getAttribute("data-step")); }
  });
})();
