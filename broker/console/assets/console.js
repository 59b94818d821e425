// Brooklet console: hash routes, JSON API polling every 2 s. The DOM is
// built with createElement and textContent only, so every value from the
// broker (a record's key, value and headers included) is shown as text.
"use strict";
(function () {
  const POLL_MS = 2000;
  const PAGE = 50;
  let session = null;
  let view = null; // { refresh: async fn, stop: fn }
  let timer = null;

  // el("td", {class: "num"}, "text", child, ...): an element; strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function link(href, text) { return el("a", { href }, text); }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, message) { super(status + " " + message); this.status = status; }
  }

  async function api(path, form) {
    const opts = { credentials: "same-origin", headers: {} };
    if (form) {
      opts.method = "POST";
      opts.headers["content-type"] = "application/x-www-form-urlencoded";
      if (session && session.csrf) opts.headers["x-csrf-token"] = session.csrf;
      opts.body = form instanceof URLSearchParams ? form : new URLSearchParams(form);
    }
    let response;
    try {
      response = await fetch("api/" + path, opts);
    } catch (e) {
      throw new ApiError("network", "the broker did not answer " + path + ": " + e.message);
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error : response.statusText;
      throw new ApiError(response.status, path + ": " + message);
    }
    return body;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  // 12345 -> "12.3k": short enough for a chart's axis.
  function fmtCount(n) {
    if (n === null || n === undefined) return "";
    const a = Math.abs(n);
    if (a >= 1e9) return +(n / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return +(n / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return +(n / 1e3).toFixed(1) + "k";
    return String(+n.toFixed(2));
  }

  function plural(n, noun) { return n + " " + noun + (n === 1 ? "" : "s"); }

  // 3725 -> "1h 02m 05s".
  function fmtDuration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (d) return d + "d " + h + "h " + pad(m) + "m";
    if (h) return h + "h " + pad(m) + "m " + pad(s % 60) + "s";
    if (m) return m + "m " + pad(s % 60) + "s";
    return s + "s";
  }

  function table(headers, rows) {
    return el("table", {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: String(headers.length) }, "none"))]));
  }

  function row(...cells) {
    return el("tr", {}, cells.map((c) => typeof c === "number" ? el("td", { class: "num" }, String(c)) : el("td", {}, c)));
  }

  function replace(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  // A form whose submit posts its fields; `done` gets the answer.
  function actionForm(title, fields, submit, done) {
    const message = el("span", {});
    const form = el("form", {}, el("strong", {}, title), fields, el("button", { type: "submit" }, submit), message);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      message.className = "";
      message.textContent = "…";
      try {
        const result = await done(new FormData(form));
        message.className = "notice";
        message.textContent = result || "done";
      } catch (e) {
        message.className = "danger";
        message.textContent = e.message;
      }
    });
    return form;
  }

  function input(label, name, attrs) {
    return el("label", {}, label, el(attrs && attrs.multiline ? "textarea" : "input", Object.assign({ name }, attrs && attrs.multiline ? { rows: "2" } : {}, attrs || {})));
  }

  function formParams(data) {
    const p = new URLSearchParams();
    for (const [k, v] of data.entries()) {
      if (k === "config" || k === "set") {
        for (const line of String(v).split("\n")) if (line.trim()) p.append(k, line.trim());
      } else if (k === "headers") {
        for (const line of String(v).split("\n")) {
          if (!line.trim()) continue;
          const at = line.indexOf(":");
          p.append("header_name", at < 0 ? line.trim() : line.slice(0, at).trim());
          p.append("header_value", at < 0 ? "" : line.slice(at + 1).trim());
        }
      } else p.append(k, v);
    }
    return p;
  }

  // Shows bytes as the API rendered them: JSON pretty-printed, text as is, else hex.
  function shown(v) {
    if (v === null || v === undefined) return el("span", { class: "kind" }, "null");
    let text = v.text;
    if (v.kind === "json") { try { text = JSON.stringify(JSON.parse(v.text), null, 2); } catch (e) { text = v.text; } }
    return el("div", {}, el("span", { class: "kind" }, v.kind), el("pre", {}, text));
  }

  // A live chart. `gaps`: a missing sample means "nothing happened" (no
  // produce in that second), so the line breaks there instead of joining
  // its neighbours.
  function chart(title, series, container, gaps) {
    const clock = (t, seconds) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined, hour12: false });
    const opts = {
      title, width: 420, height: 200,
      series: [{}].concat(series.map((s, i) => ({ label: s, stroke: ["#2b6cb0", "#c05621", "#2f855a"][i % 3], spanGaps: !gaps, value: (u, v) => v === null ? "–" : fmtCount(v) }))),
      // From the first sample to the last, at least a minute wide: with
      // one sample uPlot would stretch the time axis over years.
      scales: { x: { time: true, range: (u, min, max) => {
        const t = u.data[0];
        if (!t || !t.length) return [min, max];
        const last = t[t.length - 1];
        return [Math.min(t[0], last - 60), last];
      } } },
      axes: [
        { space: 80, values: (u, ticks, axis, space, incr) => ticks.map((t) => clock(t, incr < 60)) },
        { size: 60, values: (u, ticks) => ticks.map(fmtCount) },
      ],
    };
    const data = [[]].concat(series.map(() => []));
    const card = el("div", { class: "card" });
    container.appendChild(card);
    if (typeof uPlot === "undefined") { card.textContent = title + ": charts unavailable"; return { set() {} }; }
    const plot = new uPlot(opts, data, card);
    return { set(d) { plot.setData(d); } };
  }

  // Runs a view's refresh now, out of the poll, showing what fails.
  function refreshNow(refresh) { refresh().catch((e) => showError(e.message)); }

  function pager(state, total, onChange) {
    const from = total ? state.offset + 1 : 0;
    const to = Math.min(state.offset + PAGE, total);
    return el("div", { class: "pager" },
      el("button", { onclick: () => { state.offset = Math.max(0, state.offset - PAGE); onChange(); }, ...(state.offset ? {} : { disabled: "" }) }, "‹ previous"),
      el("span", {}, from + "–" + to + " of " + total),
      el("button", { onclick: () => { state.offset += PAGE; onChange(); }, ...(to < total ? {} : { disabled: "" }) }, "next ›"));
  }

  // ---- views ----

  function overviewView(main) {
    const info = el("div", {});
    const charts = el("div", { class: "charts" });
    replace(main, el("h1", {}, "Overview"), info, el("h2", {}, "Last 10 minutes"), charts);
    const rates = chart("Records per second", ["in", "out"], charts);
    const latency = chart("Produce latency (ms)", ["p50", "p99"], charts, true);
    const commit = chart("Group commit (ms)", ["mean"], charts, true);
    return async () => {
      let o, h;
      try {
        [o, h] = await Promise.all([api("overview"), api("history")]);
      } catch (e) {
        if (e.status === 403) {
          replace(main, el("h1", {}, "Overview"), el("p", {}, "This user may not describe the cluster, so the overview is hidden. ",
            link("#/topics", "Topics"), " and ", link("#/groups", "Groups"), " show what it may see."));
          return;
        }
        throw e;
      }
      const t = h.at_ms.map((ms) => ms / 1000);
      rates.set([t, h.records_in, h.records_out]);
      latency.set([t, h.produce_p50_ms, h.produce_p99_ms]);
      commit.set([t, h.group_commit_ms]);
      replace(info, table(["", ""], [
        row("Version", o.version),
        row("Uptime", fmtDuration(o.uptime_s)),
        row("Data directory", o.data_dir),
        row("Disk used", fmtBytes(o.disk_used_bytes)),
        row("Disk free", fmtBytes(o.disk_free_bytes)),
        row("Topics", o.topics),
        row("Groups", o.groups),
        row("Authentication", o.auth_required ? "required" : "none"),
      ]), el("h2", {}, "Listeners"), table(["name", "address", "TLS"], o.listeners.map((l) => row(l.name, l.addr, l.tls ? "on" : "off"))));
    };
  }

  function topicsView(main) {
    const state = { offset: 0, filter: "" };
    const list = el("div", {});
    const filter = el("input", { placeholder: "filter by name", "aria-label": "filter" });
    let refresh;
    filter.addEventListener("input", () => { state.filter = filter.value; state.offset = 0; refreshNow(refresh); });
    const create = actionForm("Create topic", [
      input("name", "name", { required: "" }), input("partitions", "partitions", { type: "number", min: "1", value: "1" }),
      input("config (KEY=VALUE per line)", "config", { multiline: true }),
    ], "Create", async (data) => {
      const r = await api("topics", formParams(data));
      await refresh();
      return "created " + r.name;
    });
    replace(main, el("h1", {}, "Topics"), filter, list, create);
    refresh = async () => {
      const q = new URLSearchParams({ offset: state.offset, limit: PAGE, filter: state.filter });
      const r = await api("topics?" + q);
      replace(list, pager(state, r.total, () => refreshNow(refresh)), table(["name", "partitions", "records", "stored", "records/s"],
        r.items.map((t) => row(link("#/topics/" + encodeURIComponent(t.name), t.name), t.partitions, t.records, fmtBytes(t.stored_bytes), t.rate === null ? "–" : t.rate.toFixed(1)))));
    };
    return refresh;
  }

  function topicView(main, name) {
    const path = "topics/" + encodeURIComponent(name);
    const live = el("div", {});
    const send = actionForm("Send a record", [
      input("partition (empty: any)", "partition", { type: "number", min: "0" }), input("key", "key"),
      input("value", "value", { multiline: true }), input("headers (NAME: VALUE per line)", "headers", { multiline: true }),
    ], "Send", async (data) => {
      const r = await api(path + "/records", formParams(data));
      return "sent to partition " + r.partition + " at offset " + r.offset;
    });
    const alter = actionForm("Change config", [
      input("set (KEY=VALUE per line)", "set", { multiline: true }), input("remove key", "remove"),
    ], "Apply", async (data) => { await api(path + "/config", formParams(data)); return "config changed"; });
    const del = actionForm("Delete topic", [input("type the topic's name to confirm", "confirm", { required: "" })],
      "Delete", async (data) => { await api(path + "/delete", formParams(data)); location.hash = "#/topics"; return "deleted"; });
    del.classList.add("danger");
    // The forms show once the topic has loaded, and go if it is deleted;
    // only those the user may use.
    const browse = el("p", {}, link("#/topics/" + encodeURIComponent(name) + "/records", "Browse records"));
    const actions = el("div", { hidden: "" }, browse, send, alter, del);
    replace(main, el("h1", {}, "Topic ", el("span", {}, name)), live, actions);
    const state = { offset: 0 };
    const refresh = async () => {
      let t;
      try {
        t = await api(path + "?" + new URLSearchParams({ offset: state.offset, limit: PAGE }));
      } catch (e) {
        if (e.status === 404) { actions.hidden = true; replace(live); }
        throw e;
      }
      actions.hidden = false;
      browse.hidden = !t.may.read; send.hidden = !t.may.write; alter.hidden = !t.may.alter; del.hidden = !t.may.delete;
      replace(live,
        el("p", {}, plural(t.partitions.total, "partition") + ", " + plural(t.records, "record") + ", " + fmtBytes(t.stored_bytes) + " stored"),
        el("h2", {}, "Partitions"),
        pager(state, t.partitions.total, () => refreshNow(refresh)),
        table(["partition", "log start", "high watermark", "records"], t.partitions.items.map((p) => row(p.partition, p.log_start, p.high_watermark, p.high_watermark - p.log_start))),
        el("h2", {}, "Config"),
        table(["key", "value"], t.config.map((c) => row(c.key, c.value))),
        el("h2", {}, "Consumer groups"),
        table(["group", "state", "members", "lag"], t.groups.map((g) => row(link("#/groups/" + encodeURIComponent(g.id), g.id), g.state, g.members, g.lag))));
    };
    return refresh;
  }

  function recordsView(main, name) {
    const path = "topics/" + encodeURIComponent(name) + "/records";
    const partition = el("input", { type: "number", min: "0", name: "partition", placeholder: "the key's, or 0" });
    const mode = el("select", { name: "mode" }, el("option", { value: "latest" }, "latest N"), el("option", { value: "offset" }, "from offset"), el("option", { value: "time_ms" }, "from time (ms)"));
    const at = el("input", { name: "at", value: "50" });
    const key = el("input", { name: "key", placeholder: "any key" });
    const live = el("div", {});
    let refresh;
    const controls = el("form", {}, el("label", {}, "partition", partition), el("label", {}, "start", mode), el("label", {}, "N / offset / time", at), el("label", {}, "key", key), el("button", { type: "submit" }, "Show"));
    controls.addEventListener("submit", (ev) => { ev.preventDefault(); refreshNow(refresh); });
    replace(main, el("h1", {}, "Records of ", link("#/topics/" + encodeURIComponent(name), name)), controls, live);
    refresh = async () => {
      const q = new URLSearchParams();
      if (partition.value) q.set("partition", partition.value);
      if (mode.value === "latest") { q.set("latest", at.value || "50"); q.set("limit", at.value || "50"); } else q.set(mode.value, at.value || "0");
      if (key.value) q.set("key", key.value);
      const r = await api(path + "?" + q);
      replace(live,
        el("p", {}, "Partition " + r.partition + " (of " + r.partitions + "): " +
          (r.high_watermark - r.log_start > 1 ? "records at offsets " + r.log_start + "–" + (r.high_watermark - 1)
            : r.high_watermark > r.log_start ? "one record, at offset " + r.log_start : "no records") +
          " (high watermark " + r.high_watermark + "); showing from offset " + r.from + ", next " + r.next_offset),
        table(["offset", "time", "key", "value", "headers"], r.records.map((rec) => el("tr", { class: "record" },
          el("td", { class: "num" }, String(rec.offset)),
          el("td", {}, new Date(rec.timestamp_ms).toISOString()),
          el("td", {}, shown(rec.key)),
          el("td", {}, shown(rec.value)),
          el("td", {}, rec.headers.map((h) => el("div", {}, el("strong", {}, h.name + ": "), shown(h.value))))))));
    };
    return refresh;
  }

  function groupsView(main) {
    const state = { offset: 0 };
    const list = el("div", {});
    replace(main, el("h1", {}, "Consumer groups"), list);
    const refresh = async () => {
      const r = await api("groups?" + new URLSearchParams({ offset: state.offset, limit: PAGE }));
      replace(list, pager(state, r.total, () => refreshNow(refresh)), table(["group", "state", "members", "lag"],
        r.items.map((g) => row(link("#/groups/" + encodeURIComponent(g.id), g.id), g.state, g.members, g.lag === null ? "–" : g.lag))));
    };
    return refresh;
  }

  function groupView(main, id) {
    const path = "groups/" + encodeURIComponent(id);
    const state = { offset: 0, filter: "" };
    const live = el("div", {});
    const parts = el("div", {});
    const charts = el("div", { class: "charts" });
    const lagChart = chart("Lag (records), last 10 minutes", ["lag"], charts);
    const filter = el("input", { placeholder: "filter by topic", "aria-label": "filter partitions by topic" });
    let refresh;
    filter.addEventListener("input", () => { state.filter = filter.value; state.offset = 0; refreshNow(refresh); });
    const reset = actionForm("Reset offsets (only while the group has no members)", [
      input("topic", "topic", { required: "" }),
      el("label", {}, "to", el("select", { name: "to" }, ["earliest", "latest", "offset", "timestamp"].map((v) => el("option", { value: v }, v)))),
      input("offset or time (ms)", "value"),
    ], "Reset", async (data) => { const r = await api(path + "/reset", formParams(data)); return "reset " + r.offsets.length + " partitions"; });
    replace(main, el("h1", {}, "Group ", el("span", {}, id)), live, charts, el("h2", {}, "Partitions"), filter, parts, reset);
    const owns = (m) => m.assignment.map((a) => a.topic + "/" + a.partition).join(", ") + (m.owns > m.assignment.length ? " … and " + (m.owns - m.assignment.length) + " more" : "");
    refresh = async () => {
      const g = await api(path + "?" + new URLSearchParams({ offset: state.offset, limit: PAGE, filter: state.filter }));
      reset.hidden = !g.may.reset;
      lagChart.set([g.lag_history.at_ms.map((ms) => ms / 1000), g.lag_history.lag]);
      replace(live,
        el("p", {}, "State " + g.state + ", epoch " + g.epoch + ", total lag ", el("strong", { class: "lag" }, String(g.lag))),
        el("h2", {}, "Members"),
        table(["member", "client", "host", "partitions", "owns"], g.members.map((m) => row(m.member_id, m.client_id, m.host, m.owns, owns(m)))));
      replace(parts,
        pager(state, g.partitions.total, () => refreshNow(refresh)),
        table(["topic", "partition", "committed", "high watermark", "lag", "owner"], g.partitions.items.map((p) => row(link("#/topics/" + encodeURIComponent(p.topic), p.topic), p.partition, p.committed === null ? "–" : p.committed, p.high_watermark, p.lag, p.owner || "–"))));
    };
    return refresh;
  }

  function loginView(main) {
    const form = actionForm("Log in", [input("user", "user", { required: "", autocomplete: "username" }), input("password", "password", { type: "password", autocomplete: "current-password" })],
      "Log in", async (data) => { session = await api("login", formParams(data)); route(); return "logged in"; });
    replace(main, el("h1", {}, "Brooklet console"), form);
    return null;
  }

  function userBox() {
    const box = document.getElementById("user");
    if (!session || !session.user) { box.replaceChildren(); return; }
    box.replaceChildren(document.createTextNode(session.user + " "), el("button", { onclick: async () => {
      try { await api("logout", {}); } catch (e) { showError(e.message); }
      session = await api("session");
      route();
    } }, "log out"));
  }

  function route() {
    clearInterval(timer);
    showError("");
    const main = document.getElementById("main");
    userBox();
    if (session.auth_required && !session.user) { loginView(main); return; }
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    let refresh;
    if (parts[0] === "topics" && parts[1] && parts[2] === "records") refresh = recordsView(main, parts[1]);
    else if (parts[0] === "topics" && parts[1]) refresh = topicView(main, parts[1]);
    else if (parts[0] === "topics") refresh = topicsView(main);
    else if (parts[0] === "groups" && parts[1]) refresh = groupView(main, parts[1]);
    else if (parts[0] === "groups") refresh = groupsView(main);
    else refresh = overviewView(main);
    const tick = async () => {
      try { await refresh(); showError(""); } catch (e) {
        if (e.status === 401) { session = await api("session"); route(); return; }
        showError("Could not load: " + e.message);
      }
    };
    tick();
    timer = setInterval(tick, POLL_MS);
  }

  async function start() {
    try { session = await api("session"); } catch (e) { showError("Could not start: " + e.message); return; }
    window.addEventListener("hashchange", route);
    route();
  }
  start();
})();
