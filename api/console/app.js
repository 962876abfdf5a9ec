// pushring console: plain JavaScript over the HTTP API, authenticated by
// the console's session cookie (HttpOnly: this script never sees it).
// Calls that change anything carry the CSRF token the login returned.
"use strict";

let csrf = "";
let timers = [];
let source = null; // the group tail's EventSource

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 401) { showLogin(); throw new Error("logged out"); }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new Error(data && data.error ? data.error.code + ": " + data.error.message : r.status);
  return data;
}

function fail(err) { $("#error").textContent = err.message || String(err); }
function clearError() { $("#error").textContent = ""; }

function stop() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (source) { source.close(); source = null; }
}

function every(ms, fn) { fn(); timers.push(setInterval(fn, ms)); }

function showLogin() {
  stop();
  $("#nav").hidden = true;
  $("#view").hidden = true;
  $("#login").hidden = false;
  $("#login-key").focus();
}

function showApp() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#view").hidden = false;
  route();
}

async function start() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    const r = await fetch("/console/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ admin_key: $("#login-key").value }),
    });
    const data = await r.json();
    if (!r.ok) {
      $("#login-error").textContent = data.error ? data.error.message : "refused";
      $("#login-key").value = "";
      return;
    }
    csrf = data.csrf;
    $("#login-key").value = "";
    showApp();
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    csrf = "";
    showLogin();
  });
  window.addEventListener("hashchange", route);
  const r = await fetch("/console/session", { credentials: "same-origin" });
  if (r.ok) { csrf = (await r.json()).csrf; showApp(); } else showLogin();
}

function route() {
  stop();
  clearError();
  const [page, arg] = (location.hash.slice(1) || "cluster").split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + page || (page === "group" && a.id === "nav-groups"));
  const view = $("#view");
  view.replaceChildren();
  const pages = { cluster, users: () => principals("user"), devices: () => principals("device"), groups, group: () => group(decodeURIComponent(arg || "")), refusals, webhooks };
  (pages[page] || cluster)(view).catch(fail);
}

const num = (x, d = 0) => Number(x).toLocaleString("en", { maximumFractionDigits: d, minimumFractionDigits: d });

// ---- cluster ----

async function cluster(view) {
  const body = el("tbody", { id: "nodes" });
  view.append(el("h2", {}, "Cluster"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Node"), el("th", {}, "State"), el("th", { class: "num" }, "Ring share"),
      el("th", { class: "num" }, "Connections"), el("th", { class: "num" }, "Sessions"), el("th", { class: "num" }, "Messages in/s"),
      el("th", { class: "num" }, "Deliveries/s"), el("th", {}, "MQTT"), el("th", {}, "Version"))), body),
    el("p", { class: "note" }, "Refreshed every 2 s. Rates are each node's own, over its last two-second sample."));
  every(2000, async () => {
    try {
      const [c, s] = await Promise.all([api("GET", "/v1/cluster"), api("GET", "/v1/cluster/stats")]);
      const stats = Object.fromEntries(s.nodes.map((n) => [n.node, n]));
      body.replaceChildren(...c.members.map((n) => {
        const state = n.state || "alive";
        const st = state === "alive" ? stats[n.id] || {} : {}; // a dead node's last sample is not its state
        return el("tr", { class: state, "data-node": n.id, "data-state": state },
          el("td", {}, n.id + (n.id === c.self.id ? " (this node)" : "")),
          el("td", { class: "state-" + state }, state),
          el("td", { class: "num" }, num(100 * (n.ring_share || 0), 1) + " %"),
          el("td", { class: "num" }, st.node ? num(st.connections) : "–"),
          el("td", { class: "num" }, st.node ? num(st.sessions) : "–"),
          el("td", { class: "num" }, st.node ? num(st.messages_in_per_sec, 1) : "–"),
          el("td", { class: "num" }, st.node ? num(st.deliveries_per_sec, 1) : "–"),
          el("td", {}, (n.mqtt || []).join(", ")),
          el("td", {}, n.version));
      }));
      clearError();
    } catch (e) { fail(e); }
  });
}

// ---- users and devices ----

async function principals(kind, view = $("#view")) {
  const plural = kind + "s";
  const list = el("tbody", { id: plural });
  const prefix = el("input", { id: plural + "-prefix", placeholder: "id starts with" });
  let cursor = "";
  const more = el("button", { class: "plain", type: "button", hidden: "" }, "More");
  async function load(reset) {
    if (reset) { cursor = ""; list.replaceChildren(); }
    const q = new URLSearchParams({ limit: "50" });
    if (prefix.value) q.set("prefix", prefix.value);
    if (cursor) q.set("cursor", cursor);
    const page = await api("GET", "/v1/" + plural + "?" + q);
    for (const p of page[plural]) list.append(principalRow(kind, p, () => load(true).catch(fail)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load(false).catch(fail));
  const id = el("input", { id: kind + "-create-id", placeholder: "id", required: "" });
  const pw = kind === "user" ? el("input", { id: "user-create-password", type: "password", placeholder: "password", required: "" }) : null;
  const out = el("div");
  const create = el("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const body = { id: id.value };
      if (pw) body.password = pw.value;
      const r = await api("POST", "/v1/" + plural, body);
      out.replaceChildren(kind === "device" ? el("p", {}, "Device ", el("b", {}, r.id), " made. Its key, shown once: ", el("span", { class: "secret", id: "device-key" }, r.key)) : "");
      id.value = "";
      if (pw) pw.value = "";
      await load(true);
    } catch (e) { fail(e); }
  } }, id, pw, el("button", { id: kind + "-create-btn", type: "submit" }, "Create " + kind));
  view.append(el("h2", {}, kind === "user" ? "Users" : "Devices"), create, out,
    el("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); load(true).catch(fail); } }, prefix, el("button", { class: "plain", type: "submit" }, "Filter")),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Id"), el("th", {}, "Created"), el("th", {}, "Groups"), el("th", {}, ""))), list), more);
  await load(true);
}

function principalRow(kind, p, reload) {
  const groups = el("td", {}, "…");
  api("GET", "/v1/" + kind + "s/" + encodeURIComponent(p.id) + "/groups").then((g) => {
    groups.replaceChildren(...g.groups.map((m) => el("a", { href: "#group/" + encodeURIComponent(m.id), class: "pill" }, m.id + (m.publisher && !m.member ? " (pub)" : ""))));
  }).catch(() => groups.replaceChildren("?"));
  const actions = el("td", {});
  if (kind === "device") {
    actions.append(el("button", { class: "plain", type: "button", onclick: async () => {
      if (!confirm("Rotate the key of " + p.id + "? The old key stops working.")) return;
      try { const r = await api("POST", "/v1/devices/" + encodeURIComponent(p.id) + "/key"); alert("New key for " + r.id + ":\n" + r.key); } catch (e) { fail(e); }
    } }, "Rotate key"), " ");
  }
  actions.append(el("button", { class: "danger", type: "button", "data-delete": p.id, onclick: async () => {
    if (!confirm("Delete " + kind + " " + p.id + "? Its connections close and its memberships go.")) return;
    try { await api("DELETE", "/v1/" + kind + "s/" + encodeURIComponent(p.id)); reload(); } catch (e) { fail(e); }
  } }, "Delete"));
  return el("tr", { "data-id": p.id }, el("td", {}, p.id), el("td", {}, p.created), groups, actions);
}

// ---- groups ----

async function groups(view) {
  const list = el("tbody", { id: "groups" });
  const id = el("input", { id: "group-create-id", placeholder: "group id", required: "" });
  const mcp = el("input", { id: "group-create-mcp", type: "checkbox" });
  async function load() {
    const page = await api("GET", "/v1/groups?limit=500");
    list.replaceChildren(...page.groups.map((g) => el("tr", { "data-id": g.id },
      el("td", {}, el("a", { href: "#group/" + encodeURIComponent(g.id) }, g.id)),
      el("td", {}, g.members_can_publish ? "yes" : "no"), el("td", {}, g.created),
      el("td", {}, el("button", { class: "danger", type: "button", onclick: async () => {
        if (!confirm("Delete group " + g.id + "?")) return;
        try { await api("DELETE", "/v1/groups/" + encodeURIComponent(g.id)); await load(); } catch (e) { fail(e); }
      } }, "Delete")))));
  }
  view.append(el("h2", {}, "Groups"),
    el("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const g = await api("POST", "/v1/groups", { id: id.value, members_can_publish: mcp.checked });
        location.hash = "#group/" + encodeURIComponent(g.id);
      } catch (e) { fail(e); }
    } }, id, el("label", {}, mcp, " members can publish"), el("button", { id: "group-create-btn", type: "submit" }, "Create group")),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Id"), el("th", {}, "Members can publish"), el("th", {}, "Created"), el("th", {}, ""))), list));
  await load();
}

async function group(gid, view = $("#view")) {
  const members = el("ul", { id: "members" });
  const publishers = el("ul", { id: "publishers" });
  const online = el("ul", { id: "online" });
  const onlineNote = el("p", { class: "note", id: "online-note" });
  const tail = el("ul", { class: "tail", id: "tail" });
  async function load() {
    const g = await api("GET", "/v1/groups/" + encodeURIComponent(gid));
    const row = (role, id) => el("li", { "data-id": id }, id, " ", el("button", { class: "plain", type: "button", onclick: async () => {
      try { await api("DELETE", "/v1/groups/" + encodeURIComponent(gid) + "/" + role + "/" + encodeURIComponent(id)); await load(); } catch (e) { fail(e); }
    } }, "remove"));
    members.replaceChildren(...g.members.map((id) => row("members", id)));
    publishers.replaceChildren(...g.publishers.map((id) => row("publishers", id)));
  }
  function adder(role, label) {
    const id = el("input", { id: role.slice(0, -1) + "-add-id", placeholder: "principal id", required: "" });
    return el("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try { await api("PUT", "/v1/groups/" + encodeURIComponent(gid) + "/" + role + "/" + encodeURIComponent(id.value)); id.value = ""; await load(); } catch (e) { fail(e); }
    } }, id, el("button", { id: role.slice(0, -1) + "-add-btn", type: "submit" }, label));
  }
  view.append(el("h2", {}, "Group ", el("span", { id: "group-id" }, gid)),
    el("div", { class: "cols" },
      el("div", {}, el("h3", {}, "Members"), adder("members", "Add member"), members),
      el("div", {}, el("h3", {}, "Publishers"), adder("publishers", "Add publisher"), publishers)),
    el("h3", {}, "Online now"), onlineNote, online,
    el("h3", {}, "Live tail"), el("p", { class: "note" }, "Messages stored for this group (QoS 1 and 2) from the moment this page opened."), tail);
  await load();
  every(3000, async () => {
    try {
      const p = await api("GET", "/v1/groups/" + encodeURIComponent(gid) + "/presence");
      online.replaceChildren(...p.online.map((id) => el("li", {}, id)));
      onlineNote.textContent = p.count + " online" + (p.truncated ? " (more than listed)" : "") + (p.complete ? "" : "; no answer from " + p.missing_nodes.join(", "));
    } catch (e) { fail(e); }
  });
  source = new EventSource("/v1/groups/" + encodeURIComponent(gid) + "/tail");
  source.addEventListener("open", () => tail.setAttribute("data-open", "1"));
  source.addEventListener("message", (ev) => {
    const m = JSON.parse(ev.data);
    tail.prepend(el("li", { "data-msg": m.id }, m.stored.slice(11, 23) + "  " + (m.from || "admin") + "  " + (m.payload_base64 !== undefined ? "(binary payload, " + Math.floor(m.payload_base64.length * 3 / 4) + " bytes)" : m.payload || "")));
    while (tail.children.length > 200) tail.lastChild.remove();
  });
}

// ---- refusals ----

async function refusals(view) {
  const body = el("tbody", { id: "refusals" });
  let first = null;
  view.append(el("h2", {}, "Refusals"),
    el("p", { class: "note" }, "By reason, all nodes together: since this page opened, and since each node started."),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Reason"), el("th", { class: "num" }, "Since this page opened"), el("th", { class: "num" }, "Since start"))), body));
  every(2000, async () => {
    try {
      const s = await api("GET", "/v1/cluster/stats");
      const total = {};
      for (const n of s.nodes) for (const [k, v] of Object.entries(n.refusals || {})) total[k] = (total[k] || 0) + v;
      if (!first) first = total;
      const rows = Object.keys(total).sort((a, b) => (total[b] - (first[b] || 0)) - (total[a] - (first[a] || 0)) || a.localeCompare(b));
      body.replaceChildren(...rows.map((k) => el("tr", { "data-reason": k }, el("td", {}, k), el("td", { class: "num" }, num(total[k] - (first[k] || 0))), el("td", { class: "num" }, num(total[k])))));
    } catch (e) { fail(e); }
  });
}

// ---- webhooks ----

async function webhooks(view) {
  const list = el("tbody", { id: "webhooks" });
  const url = el("input", { id: "webhook-url", placeholder: "https://…", size: "40", required: "" });
  const out = el("div");
  async function load() {
    const w = await api("GET", "/v1/webhooks");
    list.replaceChildren(...w.webhooks.map((h) => el("tr", {}, el("td", {}, h.id), el("td", {}, h.url), el("td", {}, h.events.length ? h.events.join(", ") : "all"),
      el("td", {}, el("button", { class: "danger", type: "button", onclick: async () => { try { await api("DELETE", "/v1/webhooks/" + encodeURIComponent(h.id)); await load(); } catch (e) { fail(e); } } }, "Delete")))));
  }
  view.append(el("h2", {}, "Webhooks"),
    el("form", { class: "inline", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const h = await api("POST", "/v1/webhooks", { url: url.value });
        out.replaceChildren(el("p", {}, "Its signing secret, shown once: ", el("span", { class: "secret" }, h.secret)));
        url.value = "";
        await load();
      } catch (e) { fail(e); }
    } }, url, el("button", { type: "submit" }, "Add endpoint")), out,
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Id"), el("th", {}, "URL"), el("th", {}, "Events"), el("th", {}, ""))), list));
  await load();
}

start().catch(fail);
