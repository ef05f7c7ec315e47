// phpvoip console: keeps the server-rendered pages live from GET /events
// (Server-Sent Events). Plain JS, no library. Every page works without it.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const page = document.body.dataset.page;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- durations tick locally between events (once a second, not per event) ----------
  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // -- live calls table ------------------------------------------------------------------
  // rows: call id -> {tr, base (s), seen (ms)}; one DOM pass per `calls` batch.
  const callsTable = document.getElementById("calls-table");
  const cellNames = ["Call", "From", "To", "State", "Duration", "Legs", "Media"];
  const rows = new Map();
  // Under overload the server sends only the longest-running calls (console.max_rows)
  // and how many it leaves out: a call that ends makes room, the server sends the next.
  const moreLine = document.getElementById("calls-more");
  let more = moreLine ? Number(moreLine.dataset.more || 0) : 0;

  function legsList(legs) {
    const ul = el("ul", { class: "legs" });
    for (const leg of legs) {
      const li = el("li", {}, leg.role + " " + leg.module + " " + leg.remote + " ");
      li.appendChild(el("span", { class: "state" }, leg.state));
      ul.appendChild(li);
    }
    return ul;
  }

  function newCallRow(row) {
    const tr = el("tr", { "data-call-id": row.id });
    for (const name of cellNames) {
      tr.appendChild(el("td", { "data-label": name }));
    }
    const link = el("a", { href: "/ladder/" + encodeURIComponent(row.id) }, row.id);
    tr.cells[0].appendChild(link);
    tr.cells[4].classList.add("duration");
    const td = el("td");
    const form = el("form", { method: "post", action: "/calls/" + encodeURIComponent(row.id) + "/hangup" });
    form.appendChild(el("input", { type: "hidden", name: "csrf", value: csrf }));
    form.appendChild(el("button", { type: "submit", class: "hangup", "aria-label": "Hang up " + row.id },
                        "Hang up"));
    td.appendChild(form);
    tr.appendChild(td);
    return tr;
  }

  function showDuration(entry, now) {
    const text = clock(entry.base + (now - entry.seen) / 1000);
    const td = entry.tr.cells[4];
    if (td.textContent !== text) td.textContent = text;
  }

  function fillCallRow(entry, row, now) {
    const tr = entry.tr;
    // Cells are updated in place: a focused hang-up button keeps its focus.
    tr.cells[1].textContent = row.from;
    tr.cells[2].textContent = row.to;
    tr.cells[3].textContent = row.state;
    entry.base = row.talk === null ? row.age : row.talk;
    entry.seen = now;
    showDuration(entry, now);
    tr.cells[5].replaceChildren(legsList(row.legs));
    tr.cells[6].textContent = row.media;
  }

  function removeCall(id) {
    const entry = rows.get(id);
    if (!entry) return;
    rows.delete(id);
    const tr = entry.tr;
    const focused = tr.contains(document.activeElement);
    const next = tr.nextElementSibling || tr.previousElementSibling;
    tr.remove();
    if (focused) {
      const button = next && next.querySelector("button.hangup");
      (button || document.querySelector("main h1")).focus();
    }
  }

  function applyCalls(batch) {
    if (!callsTable) return;
    const now = Date.now();
    const added = document.createDocumentFragment();
    if (batch.all) {
      // A (re)connected stream's first batch holds every live call: drop the rest.
      const live = new Set(batch.upsert.map(function (row) { return row.id; }));
      for (const id of Array.from(rows.keys())) if (!live.has(id)) removeCall(id);
    }
    for (const id of batch.ended) removeCall(id);
    for (const row of batch.upsert) {
      let entry = rows.get(row.id);
      if (!entry) {
        entry = { tr: newCallRow(row), base: 0, seen: now };
        rows.set(row.id, entry);
        added.appendChild(entry.tr);
      }
      fillCallRow(entry, row, now);
    }
    if (added.childNodes.length) callsTable.tBodies[0].appendChild(added);
    if (typeof batch.more === "number") more = batch.more;
    countCalls();
  }

  function tick() {
    const now = Date.now();
    for (const entry of rows.values()) showDuration(entry, now);
  }

  function countCalls() {
    const count = document.getElementById("calls-active");
    if (count) count.textContent = String(rows.size + more);
    if (moreLine) {
      moreLine.dataset.more = String(more);
      moreLine.textContent = more + " more call" + (more === 1 ? "" : "s") + " not shown (the longest-running are)";
      moreLine.hidden = more === 0;
    }
  }

  if (callsTable) {
    // The server-rendered rows: their durations count from the page load.
    const now = Date.now();
    for (const tr of callsTable.tBodies[0].rows) {
      const id = tr.dataset.callId;
      const td = tr.cells[4];
      if (!id || !td) continue;
      const base = td.dataset.talk !== undefined ? Number(td.dataset.talk) : Number(td.dataset.age);
      rows.set(id, { tr: tr, base: base, seen: now });
    }
    setInterval(tick, 1000);
  }

  // Hang-up with fetch (204), the feed then removes the row; the plain form post
  // (303 back to /calls) is the fallback without script.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.action || !/\/hangup$/.test(new URL(form.action).pathname)) return;
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 204) {
          const tr = form.closest("tr");
          if (tr) tr.classList.add("ending");
        } else if (button) {
          button.disabled = false;
        }
      })
      .catch(function () { if (button) button.disabled = false; });
  });

  // -- generic tables (lines, queues, agents, registrations) ------------------------------
  function fillTable(id, table) {
    const node = document.getElementById(id);
    if (!node) return;
    const headRow = el("tr");
    for (const column of table.columns) headRow.appendChild(el("th", { scope: "col" }, column));
    node.tHead.replaceChildren(headRow);
    const body = node.tBodies[0];
    const rows = [];
    if (table.rows.length === 0) {
      const tr = el("tr", { class: "empty" });
      tr.appendChild(el("td", { colspan: String(table.columns.length) }, table.empty));
      rows.push(tr);
    }
    const actions = id === "agents-table" && table.rows.length > 0;
    if (actions) headRow.appendChild(el("th", { scope: "col" }, "Actions"));
    for (const cells of table.rows) {
      const tr = el("tr");
      cells.forEach(function (cell, i) {
        tr.appendChild(el("td", { "data-label": table.columns[i] || "" }, cell));
      });
      if (actions) tr.appendChild(agentActions(table.columns, cells));
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  // The supervisor's buttons of an agent row, as pages.agent_actions makes them.
  function agentActions(columns, cells) {
    const get = function (name) { return cells[columns.indexOf(name)] || ""; };
    const module = get("MODULE"), agent = get("AGENT");
    const buttons = get("STATE") === "logged-out" ? [["login", "Log in"]]
      : [get("PAUSED") === "True" ? ["resume", "Resume"] : ["pause", "Pause"], ["logout", "Log out"]];
    const td = el("td", { "data-label": "Actions" });
    for (const [action, label] of buttons) {
      const form = el("form", {
        method: "post", class: "agent-action",
        action: "/agents/" + encodeURIComponent(agent) + "/" + action + "?queue=" + encodeURIComponent(module),
      });
      form.appendChild(el("input", { type: "hidden", name: "csrf", value: csrf }));
      form.appendChild(el("button", { type: "submit", "aria-label": label + " " + agent + " in " + module }, label));
      td.appendChild(form);
    }
    return td;
  }

  // Agent buttons with fetch (204: the feed redraws the table); why not, in the status line.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.classList || !form.classList.contains("agent-action")) return;
    event.preventDefault();
    const status = document.getElementById("agents-status");
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 204) {
          if (status) status.textContent = "";
          return;
        }
        if (button) button.disabled = false;
        return response.text().then(function (text) { if (status) status.textContent = text.trim(); });
      })
      .catch(function () { if (button) button.disabled = false; });
  });

  let registrationsDue = null;
  function refreshRegistrations() {
    // One fetch per burst of registration events, at most once a second.
    if (registrationsDue || !document.getElementById("registrations-table")) return;
    registrationsDue = setTimeout(function () {
      registrationsDue = null;
      fetch("/api/registrations", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (table) { if (table) fillTable("registrations-table", table); });
    }, 1000);
  }

  // -- dashboard -----------------------------------------------------------------------
  function drawChart(counts) {
    const svg = document.getElementById("calls-per-minute");
    if (!svg) return;
    const top = Math.max(1, ...counts);
    const bars = svg.querySelectorAll("rect.bar");
    counts.forEach(function (count, i) {
      const bar = bars[i];
      if (!bar) return;
      const height = Math.round(1000 * count / top) / 10;
      bar.setAttribute("y", String(100 - height));
      bar.setAttribute("height", String(height));
      bar.dataset.count = String(count);
      const title = bar.querySelector("title");
      if (title) title.textContent = count + " calls, " + (counts.length - 1 - i) + " min ago";
    });
    svg.setAttribute("aria-label", "Calls per minute, last hour; peak " + top);
  }

  function showStats(stats) {
    const active = document.getElementById("calls-active");
    if (active && !callsTable) active.textContent = String(stats.calls_active);
    const regs = document.getElementById("registrations-count");
    if (regs) regs.textContent = String(stats.registrations);
    drawChart(stats.calls_per_minute);
  }

  // -- the event stream: each page subscribes to what it shows -----------------------------
  const topics = { "/": "stats,lines,queues", "/calls": "calls", "/registrations": "registrations" }[page];
  if (topics) {
    const source = new EventSource("/events?topics=" + topics);
    const data = function (event) { return JSON.parse(event.data); };
    source.addEventListener("calls", function (event) { applyCalls(data(event)); });
    source.addEventListener("stats", function (event) { showStats(data(event)); });
    source.addEventListener("registration", function () { refreshRegistrations(); });
    source.addEventListener("line", function (event) { fillTable("lines-table", data(event)); });
    source.addEventListener("queue", function (event) {
      const both = data(event);
      fillTable("queues-table", both.queues);
      fillTable("agents-table", both.agents);
    });
  }

  // -- ladder ------------------------------------------------------------------------------
  const messages = document.getElementById("messages");
  if (messages) {
    const texts = JSON.parse(messages.textContent);
    const pre = document.getElementById("message");
    const show = function (arrow) {
      for (const other of document.querySelectorAll("#ladder .arrow.selected")) other.classList.remove("selected");
      arrow.classList.add("selected");
      pre.textContent = texts[Number(arrow.dataset.index)];
    };
    for (const arrow of document.querySelectorAll("#ladder g.arrow")) {
      arrow.addEventListener("click", function () { show(arrow); });
      arrow.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          show(arrow);
        }
      });
    }
  }
})();
