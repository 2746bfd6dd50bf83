// The killswitch console: plain JavaScript, no build step. Every value
// from the hub is put in the page as text (never as HTML): file names and
// host names come from hosts that may be under attack.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(text) { return el("span", { class: "badge " + text }, text); }
function when(t) { return t && !t.startsWith("0001") ? new Date(t).toLocaleString() : "—"; }

let me = null;

async function api(path, opts) {
  opts = opts || {};
  const headers = { "X-Killswitch": "1" };
  if (opts.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.body ? JSON.stringify(opts.body) : undefined, credentials: "same-origin" });
  if (r.status === 401) { showLogin(); throw new Error("sign in"); }
  if (!r.ok) throw new Error((await r.text()).trim());
  return r.status === 204 ? null : r.json();
}

function showLogin() {
  me = null;
  $("#nav").hidden = true;
  $("#view").replaceChildren();
  $("#login").hidden = false;
}

async function start() {
  try {
    me = await api("/api/me");
  } catch (e) { return; }
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#who").textContent = me.name + " (" + me.role + ")";
  route();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  const r = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: $("#user").value, password: $("#password").value }) });
  if (!r.ok) { $("#login-error").textContent = (await r.text()).trim(); return; }
  $("#password").value = "";
  start();
});

$("#logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }).catch(() => {}); showLogin(); });

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "nothing yet"))]));
}

function incidentSummary(inc) {
  return inc.body && typeof inc.body === "object" ? inc.body : {};
}

async function queue(hostID, kind, args, note) {
  const r = await api("/api/actions", { method: "POST", body: { host_id: hostID, kind, args: args || "", note: note || "" } });
  return r.queued;
}

// clientPanel: an attack written through a file server came from a
// client machine. Say whether it is cut off, let a responder release it
// once it is clean, and point at the enrolled host at that address (the
// machine where the ransomware actually runs).
async function clientPanel(inc, b) {
  const hosts = await api("/api/hosts");
  const hostIP = (addr) => (addr || "").replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  const culprit = hosts.find((h) => h.cert_serial !== "-" && h.id !== inc.host_id && hostIP(h.addr) === b.client);
  const releases = (await api("/api/actions")).filter((a) => a.kind === "release-client" && a.host_id === inc.host_id && a.args === b.client);
  const responder = me.role === "responder";
  const released = releases.some((a) => a.state === "done");
  return el("div", { id: "client" },
    el("p", {}, "Written through the file server for the client ", el("code", {}, b.client), ": ",
      !b.client_cut_off ? "NOT cut off (" + (b.cut_off_error || "unknown") + ")."
        : released ? "cut off, then released." : "cut off from the file-sharing ports until released."),
    culprit ? el("p", {}, "That address is the enrolled host ", el("b", { id: "culprit" }, culprit.name), " (", badge(culprit.status), "): the ransomware runs there. ",
      responder && !culprit.isolated ? el("button", { id: "isolate-culprit", onclick: async () => { await queue(culprit.id, "isolate"); route(); } }, "Isolate " + culprit.name) : "") : "",
    responder && b.client_cut_off && !releases.length ? el("p", {}, el("button", { id: "release-client", class: "secondary", onclick: async () => {
      if (!confirm("Let " + b.client + " reach this file server again? Do it once that machine is clean.")) return;
      await queue(inc.host_id, "release-client", b.client); route(); } }, "Release " + b.client)) : "",
    releases.length ? el("p", { id: "release-state" }, "Release: ", releases.map((a) => [badge(a.state), " ", a.result, " "])) : "");
}

const views = {
  async hosts() {
    const hosts = await api("/api/hosts");
    const exposed = hosts.filter((h) => h.exposure.some((x) => x.ms17_010 === "vulnerable" || x.doublepulsar === true)).length;
    return [el("h2", {}, "Hosts"),
      el("div", { class: "cards" },
        el("div", { class: "card" }, el("b", {}, hosts.length), "enrolled"),
        el("div", { class: "card" }, el("b", {}, hosts.filter((h) => h.status === "online").length), "online"),
        el("div", { class: "card" }, el("b", {}, hosts.filter((h) => h.status === "isolated").length), "isolated"),
        el("div", { class: "card" }, el("b", {}, exposed), "exposed to WannaCry")),
      table(["Host", "Status", "Last seen", "Address", "Exposure", ""], hosts.map((h) => el("tr", { "data-host": h.name },
        el("td", {}, h.name), el("td", {}, badge(h.status)), el("td", {}, when(h.last_seen)), el("td", {}, h.addr),
        el("td", {}, h.exposure.length ? h.exposure.map((x) => el("div", {}, x.port + ": SMBv1 " + (x.smb1 ? "on" : "off") + ", MS17-010 " + x.ms17_010)) : "—"),
        el("td", {}, me.role === "responder" && h.status !== "revoked" && h.cert_serial !== "-" ? [
          el("button", { class: "secondary", onclick: async () => { await queue(h.id, h.isolated ? "release" : "isolate"); route(); } }, h.isolated ? "Release" : "Isolate"), " ",
          el("button", { class: "secondary", onclick: async () => {
            if (!confirm("Revoke " + h.name + "? Its agent will be refused until it enrols again with a new token.")) return;
            await api("/api/hosts/" + encodeURIComponent(h.id) + "/revoke", { method: "POST" }); route(); } }, "Revoke")] : ""))))];
  },

  async incidents() {
    const incs = await api("/api/incidents");
    return [el("h2", {}, "Incidents"), table(["Opened", "Host", "Kind", "Incident", "State", "Process", "Files"], incs.map((i) => {
      const b = incidentSummary(i);
      return el("tr", { "data-incident": i.agent_key },
        el("td", {}, when(i.opened)), el("td", {}, i.host_name), el("td", {}, i.kind),
        el("td", {}, el("a", { href: "#/incident/" + i.id }, i.agent_key)), el("td", {}, badge(b.state || "open")),
        el("td", {}, b.actor ? b.actor.executable || "" : (b.source ? b.source.ip : "")),
        el("td", {}, i.kind === "exec-blocked" ? b.count + " attempt(s) refused" : (b.damaged || []).length + " damaged, " + (b.files || []).length + " events"));
    }))];
  },

  async incident(id) {
    const inc = await api("/api/incidents/" + encodeURIComponent(id));
    const b = incidentSummary(inc);
    const actions = await api("/api/actions");
    const mine = actions.filter((a) => a.kind === "restore" && a.args === inc.agent_key && a.host_id === inc.host_id);
    const events = (b.files || []).slice(0, 500);
    return [el("h2", {}, "Incident ", inc.agent_key, " on ", inc.host_name),
      el("p", {}, "State ", badge(b.state || "open"), " — opened ", when(inc.opened),
        b.actor ? [" by pid ", String(b.actor.pid), " ", b.actor.executable || ""] : "",
        b.score ? " — score " + b.score.toFixed(2) : ""),
      b.indicators ? el("p", { class: "muted" }, "Indicators: ", b.indicators.join(", ")) : "",
      me.role === "responder" && inc.kind === "incident" ? el("p", {},
        el("button", { id: "restore", onclick: async () => { await queue(inc.host_id, "restore", inc.agent_key); route(); } }, "Queue restore"), " ",
        b.exe_sha256 ? el("button", { id: "block-fleet", class: "secondary", onclick: async () => {
          if (!confirm("Refuse to run " + (b.actor ? b.actor.executable : "this binary") + " (SHA-256 " + b.exe_sha256 + ") on every host, under any name?")) return;
          await queue("*", "block-hash", b.exe_sha256, "incident " + inc.agent_key + " on " + inc.host_name); location.hash = "#/blocklist"; } }, "Block this binary on every host") : "") : "",
      b.exe_sha256 ? el("p", { class: "muted" }, "Binary SHA-256: ", el("code", {}, b.exe_sha256)) : "",
      b.client ? await clientPanel(inc, b) : "",
      inc.kind === "exec-blocked" ? el("p", {}, "Blocked binary ", el("code", {}, b.sha256 || ""), ": ", String(b.count), " attempt(s) refused, last ", when(b.last), b.note ? " (" + b.note + ")" : "") : "",
      mine.length ? el("p", { id: "restore-state" }, "Restore: ", mine.map((a) => [badge(a.state), " ", a.result, " "])) : "",
      el("h3", {}, "Timeline"),
      el("ul", { class: "timeline" },
        el("li", {}, when(b.first_event), " first damaging write"),
        el("li", {}, when(b.frozen_at), " process tree frozen"),
        b.restored_at ? el("li", {}, when(b.restored_at), " files restored") : ""),
      el("h3", {}, "Files (", String((b.files || []).length), ")"),
      table(["Time", "Operation", "Path", "Damaged"], events.map((f) => el("tr", {},
        el("td", {}, when(f.time)), el("td", {}, f.op || f.kind || ""), el("td", {}, f.path || ""),
        el("td", {}, (b.damaged || []).includes(f.path) ? "yes" : ""))))];
  },

  async outbreak() {
    const incs = (await api("/api/incidents")).slice().reverse();
    if (!incs.length) return [el("h2", {}, "Outbreak"), el("p", { class: "muted" }, "No incidents.")];
    const hosts = [...new Set(incs.map((i) => i.host_name))];
    const t0 = new Date(incs[0].opened).getTime(), t1 = new Date(incs[incs.length - 1].opened).getTime();
    const W = 900, rowH = 26, left = 160, H = hosts.length * rowH + 40;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "outbreak");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const mk = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
    hosts.forEach((h, i) => { mk("text", { x: 4, y: 24 + i * rowH }, h); mk("line", { x1: left, x2: W - 10, y1: 20 + i * rowH, y2: 20 + i * rowH }); });
    incs.forEach((inc) => {
      const x = left + (t1 > t0 ? (new Date(inc.opened).getTime() - t0) / (t1 - t0) : 0.5) * (W - left - 20);
      const c = mk("circle", { cx: x, cy: 20 + hosts.indexOf(inc.host_name) * rowH, r: 6, class: inc.kind });
      const title = document.createElementNS(ns, "title"); title.textContent = inc.host_name + " " + when(inc.opened); c.append(title);
    });
    mk("text", { x: left, y: H - 4 }, when(incs[0].opened));
    mk("text", { x: W - 160, y: H - 4 }, when(incs[incs.length - 1].opened));
    return [el("h2", {}, "Outbreak: how the attack spread"), el("p", { class: "muted" }, incs.length + " incidents on " + hosts.length + " hosts, first at " + when(incs[0].opened)), svg,
      table(["Time", "Host", "Kind"], incs.map((i) => el("tr", {}, el("td", {}, when(i.opened)), el("td", {}, i.host_name), el("td", {}, i.kind))))];
  },

  async scans() {
    const scans = await api("/api/scans");
    const rows = scans.map((s) => [s, s.body || {}]);
    const rank = (b) => (b.doublepulsar ? 0 : b.ms17_010 === "vulnerable" ? 1 : b.smb1 ? 2 : 3);
    rows.sort((a, b) => rank(a[1]) - rank(b[1]));
    return [el("h2", {}, "Exposure (scan results)"), table(["Address", "SMBv1", "Dialects", "Signing", "MS17-010", "DoublePulsar", "Scanned"],
      rows.map(([s, b]) => el("tr", {}, el("td", {}, s.key), el("td", {}, b.smb1 === null ? "?" : b.smb1 ? "ON" : "off"),
        el("td", {}, (b.dialects || []).join(" ")), el("td", {}, b.signing || "?"),
        el("td", {}, badge(b.ms17_010 || "?"), " ", b.ms17_010_reason || ""), el("td", {}, b.doublepulsar ? badge("critical") : String(b.doublepulsar)),
        el("td", {}, when(s.scanned)))))];
  },

  async actions() {
    const acts = await api("/api/actions");
    return [el("h2", {}, "Action queue"), table(["Queued", "Host", "Action", "Argument", "By", "State", "Result"], acts.map((a) => el("tr", {},
      el("td", {}, when(a.created)), el("td", {}, a.host_id.slice(0, 8)), el("td", {}, a.kind), el("td", {}, a.args), el("td", {}, a.created_by),
      el("td", {}, badge(a.state)), el("td", {}, a.result))))];
  },

  async blocklist() {
    const [list, acts] = await Promise.all([api("/api/blocklist"), api("/api/actions")]);
    const progress = (sha) => {
      const mine = acts.filter((a) => a.kind === "block-hash" && a.args === sha);
      const n = (st) => mine.filter((a) => a.state === st).length;
      return n("done") + " done, " + (n("queued") + n("running")) + " pending, " + n("failed") + " failed";
    };
    const form = el("form", { id: "block-form", class: "inline" },
      el("input", { id: "block-sha", placeholder: "SHA-256 of the binary (64 hex digits)", size: 70, required: "", pattern: "[0-9a-fA-F]{64}" }), " ",
      el("input", { id: "block-note", placeholder: "why (incident, sample name)", size: 30 }), " ",
      el("button", { type: "submit" }, "Block on every host"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await queue("*", "block-hash", $("#block-sha").value.toLowerCase(), $("#block-note").value); route();
    });
    return [el("h2", {}, "Blocklist: binaries no host may run"),
      el("p", { class: "muted" }, "Refused by SHA-256, under any name or path, on every host with a guard, including hosts enrolled later."),
      me.role === "responder" ? form : "",
      table(["SHA-256", "Why", "By", "Since", "Hosts", ""], list.map((b) => el("tr", { "data-sha": b.sha256 },
        el("td", {}, el("code", {}, b.sha256)), el("td", {}, b.note), el("td", {}, b.created_by), el("td", {}, when(b.created)),
        el("td", {}, progress(b.sha256)),
        el("td", {}, me.role === "responder" ? el("button", { class: "secondary", onclick: async () => {
          if (!confirm("Allow " + b.sha256 + " to run again on every host?")) return;
          await queue("*", "unblock-hash", b.sha256); route(); } }, "Unblock") : ""))))];
  },

  async audit() {
    const log = await api("/api/audit");
    return [el("h2", {}, "Audit log"), table(["Time", "Who", "What", "Target", "Detail"], log.map((e) => el("tr", {},
      el("td", {}, when(e.time)), el("td", {}, e.actor), el("td", {}, e.action), el("td", {}, e.target), el("td", {}, e.detail))))];
  },
};

async function route() {
  if (!me) return;
  const [, name, arg] = (location.hash || "#/hosts").split("/");
  const view = views[name] || views.hosts;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#/" + name);
  try {
    $("#view").replaceChildren(...(await view(arg && decodeURIComponent(arg))));
  } catch (e) {
    if (me) $("#view").replaceChildren(el("p", { class: "error" }, e.message));
  }
}

window.addEventListener("hashchange", route);
setInterval(() => { if (me && !document.hidden) route(); }, 3000);
start();
