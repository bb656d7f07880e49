/* crs-bench report: sortable leaderboard tables, filters, and the test-sample browser of run pages.
   Inlined into every page; no libraries, no network. */
(function () {
  "use strict";

  // ----------------------------------------------------------------------------------- sorting
  function cellValue(row, index, type) {
    var cell = row.cells[index];
    var raw = cell ? cell.getAttribute("data-value") : null;
    if (type === "number") {
      var number = raw === null ? NaN : parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw === null ? (cell ? cell.textContent : "") : raw;
  }

  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var index = headers.indexOf(th);
    var type = th.getAttribute("data-type") || "text";
    var current = th.getAttribute("aria-sort");
    var next;
    if (current === "descending") next = "ascending";
    else if (current === "ascending") next = "descending";
    else if (type === "number") next = th.getAttribute("data-better") === "lower" ? "ascending" : "descending";
    else next = "ascending";
    headers.forEach(function (other) { if (other.hasAttribute("aria-sort")) other.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", next);
    var sign = next === "ascending" ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, position) { return [cellValue(row, index, type), position, row]; });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {  // rows without the value stay at the bottom
        if (a[0] === null && b[0] === null) return a[1] - b[1];
        return a[0] === null ? 1 : -1;
      }
      var order = type === "number" ? a[0] - b[0] : String(a[0]).localeCompare(String(b[0]));
      return order !== 0 ? sign * order : a[1] - b[1];  // stable
    });
    keyed.forEach(function (entry) { body.appendChild(entry[2]); });
  }

  document.querySelectorAll("table.board:not(.static) thead th").forEach(function (th) {
    var button = th.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () { sortTable(th.closest("table"), th); });
  });

  // ----------------------------------------------------------------------------------- filters
  var filters = document.getElementById("filters");
  function applyFilters() {
    var wanted = {};
    filters.querySelectorAll("select[data-filter]").forEach(function (select) {
      if (select.value) wanted[select.getAttribute("data-filter")] = select.value;
    });
    var shown = 0, total = 0;
    document.querySelectorAll("table.board:not(.static) tbody tr").forEach(function (row) {
      var keep = Object.keys(wanted).every(function (kind) { return row.getAttribute("data-" + kind) === wanted[kind]; });
      row.hidden = !keep;
      total += 1;
      if (keep) shown += 1;
    });
    var count = document.getElementById("filter-count");
    if (count) count.textContent = Object.keys(wanted).length ? shown + " of " + total + " rows shown" : "";
  }
  if (filters) {
    filters.addEventListener("change", applyFilters);
    filters.addEventListener("reset", function () { setTimeout(function () { applyFilters(); toggleMetrics(); }, 0); });
  }
  var allMetrics = document.getElementById("all-metrics");
  function toggleMetrics() { document.body.classList.toggle("all-metrics", !!(allMetrics && allMetrics.checked)); }
  if (allMetrics) allMetrics.addEventListener("change", toggleMetrics);

  // ----------------------------------------------------------------------------------- sample browser
  var root = document.getElementById("browser");
  var source = document.getElementById("samples-data");
  if (!root || !source) return;
  var data = JSON.parse(source.textContent);
  var PAGE = 20;
  var state = { seed: data.seeds[0], setting: null, show: "all", query: "", page: 0 };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function item(native) {
    var found = data.items[String(native)];
    return found ? { title: found[0], tier: found[1], rank: found[2] } : { title: "item " + native, tier: null, rank: null };
  }
  function tierBadge(tier) {
    if (!tier) return null;
    return el("span", { "class": "tier tier-" + tier, title: tier === "cold" ? "cold: never in a training dialogue (tail)"
      : tier + " item", text: tier });
  }
  function itemNode(native, tag, extra) {
    var info = item(native);
    var node = el(tag, extra || {}, []);
    node.appendChild(document.createTextNode(info.title));
    if (info.rank) node.title = "id " + native + ", popularity rank " + info.rank;
    else node.title = "id " + native;
    var badge = tierBadge(info.tier);
    if (badge) node.appendChild(badge);
    return node;
  }
  function contextNode(key) {  // a ranking sample's key drops its last part (the label's number)
    var turns = data.contexts[key];
    if (!turns) return null;
    return el("div", { "class": "context" }, turns.map(function (turn) {
      if (turn[0] === "…") return el("p", { "class": "earlier", text: "… " + turn[1] });
      return el("p", {}, [el("span", { "class": "role", text: turn[0] + ": " }), document.createTextNode(turn[1])]);
    }));
  }
  function settings() {
    var found = [];
    data.seeds.forEach(function (seed) {
      Object.keys(data.rows[seed] || {}).forEach(function (s) { if (found.indexOf(s) < 0) found.push(s); });
    });
    if (Object.keys(data.conv).length) found.push("conversation");
    return found;
  }
  function current() {
    if (state.setting === "conversation") return (data.conv[state.seed] || []).map(function (row) { return { conv: row }; });
    var rows = ((data.rows[state.seed] || {})[state.setting] || []).map(function (row) {
      return { id: row[0], label: row[1], top: row[2], hit: row[2].indexOf(row[1]) >= 0 };
    });
    var query = state.query.toLowerCase();
    return rows.filter(function (row) {
      if (state.show === "hits" && !row.hit) return false;
      if (state.show === "misses" && row.hit) return false;
      if (!query) return true;
      if (row.id.toLowerCase().indexOf(query) >= 0) return true;
      return [row.label].concat(row.top).some(function (n) { return item(n).title.toLowerCase().indexOf(query) >= 0; });
    });
  }
  function renderSample(row) {
    if (row.conv) {
      var c = row.conv;
      var card = el("article", { "class": "sample conv", "data-id": c.id }, [
        el("header", {}, [el("code", { text: c.id })]),
        contextNode(c.id),
        el("div", { "class": "pair" }, [
          el("div", { "class": "generated" }, [el("h4", { text: "generated response" }), el("p", { text: c.response || c.prediction || "" })]),
          el("div", { "class": "reference" }, [el("h4", { text: "reference" }), el("p", { text: c.reference || "" })])
        ])
      ]);
      if (c.recommended !== null && c.recommended !== undefined) {
        card.appendChild(el("p", { "class": "meta" }, [document.createTextNode("recommended: "), itemNode(c.recommended, "span")]));
      }
      if (c.gold && c.gold.length) {
        var gold = el("p", { "class": "meta" }, [document.createTextNode("mentioned in the reference: ")]);
        c.gold.forEach(function (n) { gold.appendChild(itemNode(n, "span")); gold.appendChild(document.createTextNode(" ")); });
        card.appendChild(gold);
      }
      return card;
    }
    var list = el("ol", {}, row.top.map(function (n) {
      return itemNode(n, "li", n === row.label ? { "class": "label-hit" } : {});
    }));
    return el("article", { "class": "sample", "data-id": row.id }, [
      el("header", {}, [el("code", { text: row.id }),
        el("span", { "class": row.hit ? "hit" : "miss", text: row.hit ? "hit@" + data.k : "miss@" + data.k }),
        el("span", {}, [document.createTextNode("label: "), itemNode(row.label, "strong")])]),
      contextNode(row.id.split("/").slice(0, -1).join("/")),
      list
    ]);
  }
  function draw() {
    var rows = current();
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    list.innerHTML = "";
    rows.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (row) { list.appendChild(renderSample(row)); });
    var total = data.totals[state.setting] || rows.length;
    var embedded = Math.min(data.limit, total);
    status.textContent = rows.length + (rows.length === embedded ? "" : " of " + embedded) + " samples" +
      (embedded < total ? " (the first " + embedded + " of " + total + ")" : "") +
      " · page " + (state.page + 1) + " of " + pages;
  }
  function select(name, options, value, onChange) {
    var node = el("select", { "data-control": name, "aria-label": name }, options.map(function (o) {
      var option = el("option", { value: o[0], text: o[1] });
      if (o[0] === value) option.selected = true;
      return option;
    }));
    node.addEventListener("change", function () { onChange(node.value); state.page = 0; draw(); });
    return el("label", {}, [document.createTextNode(name + " "), node]);
  }
  var available = settings();
  state.setting = available[0] || null;
  var search = el("input", { type: "search", placeholder: "title or sample id", "aria-label": "search" });
  search.addEventListener("input", function () { state.query = search.value; state.page = 0; draw(); });
  var prev = el("button", { type: "button", text: "‹ previous" });
  var next = el("button", { type: "button", text: "next ›" });
  prev.addEventListener("click", function () { state.page = Math.max(0, state.page - 1); draw(); });
  next.addEventListener("click", function () { state.page += 1; draw(); });
  var status = el("span", { "class": "meta", "aria-live": "polite" });
  var list = el("div", { "class": "samples" });
  root.appendChild(el("div", { "class": "controls" }, [
    select("seed", data.seeds.map(function (s) { return [s, s]; }), state.seed, function (v) { state.seed = v; }),
    select("setting", available.map(function (s) { return [s, s]; }), state.setting, function (v) { state.setting = v; }),
    select("show", [["all", "all"], ["hits", "hits"], ["misses", "misses"]], "all", function (v) { state.show = v; }),
    search, prev, next, status
  ]));
  root.appendChild(list);
  if (!available.length) { status.textContent = "no stored samples"; return; }
  draw();
})();
