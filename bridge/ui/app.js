// Cloud Odyssey dashboard: a small single-page app on the public /v1 API.
// Tokens live in this page's memory only (never localStorage): a reload
// signs out. Every text from the API is set with textContent, never parsed
// as HTML; the Content-Security-Policy allows this file alone to run.
"use strict";

const session = { access: null, refresh: null, me: null };
let timer = null; // the current page's refresh loop

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (value !== null && value !== undefined && value !== false) {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function say(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text || "";
  status.className = isError ? "error" : "";
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body, retried) {
  const headers = { accept: "application/json" };
  if (session.access) headers.authorization = "Bearer " + session.access;
  if (body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (reply.status === 401 && session.refresh && !retried) {
    if (await refresh()) return api(method, path, body, true);
  }
  const type = reply.headers.get("content-type") || "";
  const data = type.includes("json") ? await reply.json() : await reply.text();
  if (!reply.ok) {
    const problem = typeof data === "object" && data ? data : {};
    const text = problem.detail ? `${problem.title}: ${problem.detail}` : problem.title || reply.statusText;
    throw new ApiError(reply.status, text);
  }
  return { data, headers: reply.headers };
}

async function refresh() {
  const reply = await fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refresh }),
  });
  if (!reply.ok) {
    signedOut("Your sign-in expired: sign in again.");
    return false;
  }
  const pair = await reply.json();
  session.access = pair.access_token;
  session.refresh = pair.refresh_token;
  return true;
}

function signedOut(message) {
  session.access = session.refresh = session.me = null;
  document.getElementById("nav").hidden = true;
  location.hash = "#/login";
  if (message) say(message, true);
}

function when(at) {
  return at ? new Date(at * 1000).toLocaleString() : "-";
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function stateCell(state) {
  return el("span", { class: "state-" + state }, state);
}

function render(title, ...children) {
  const main = document.getElementById("main");
  main.replaceChildren(el("h1", {}, title), ...children);
  document.title = `${title} · Cloud Odyssey`;
  main.focus();
}

// --- pages -----------------------------------------------------------------

function loginPage() {
  const name = el("input", { id: "login-name", name: "name", autocomplete: "username", required: true });
  const password = el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const method = el("select", { id: "login-method", name: "method" },
    el("option", { value: "pam" }, "Unix password (proves your Unix account)"),
    el("option", { value: "password" }, "Bridge password"));
  const form = el("form", { on: { submit: async (event) => {
    event.preventDefault();
    say("Signing in…");
    try {
      const { data } = await api("POST", "/v1/auth/login", { name: name.value, password: password.value, method: method.value });
      await signedIn(data);
    } catch (err) {
      say(err.message, true);
    }
  } } },
    el("label", { for: "login-name" }, "Name", name),
    el("label", { for: "login-password" }, "Password", password),
    el("label", { for: "login-method" }, "Sign in with", method),
    el("button", { type: "submit" }, "Sign in"));
  const providers = el("div", { id: "sso" });
  render("Sign in", form, providers);
  name.focus();
  showProviders(providers);
}

// --- single sign-on (authorization code + PKCE, RFC 7636) --------------------
// The verifier and state wait in sessionStorage while the browser visits
// the provider (this tab only, gone when it closes); tokens stay in memory.

const SSO_KEY = "odyssey-sso";

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function showProviders(container) {
  let providers = [];
  try {
    providers = (await api("GET", "/v1/auth/oidc")).data.providers;
  } catch (err) {
    return; // Password sign-in still works.
  }
  providers.forEach((provider, index) => {
    const host = new URL(provider.issuer).host;
    const button = el("button", { type: "button", id: `sso-${index}`, class: "secondary", disabled: !provider.available,
      on: { click: () => startSso(provider).catch((err) => say(err.message, true)) } }, `Sign in with ${host}`);
    container.append(button);
    if (!provider.available) container.append(el("p", { class: "error" }, `${host}: ${provider.error}`));
  });
}

async function startSso(provider) {
  if (!window.crypto || !crypto.subtle) throw new Error("Single sign-on needs HTTPS (or a loopback address).");
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const redirect = location.origin + "/ui/";
  sessionStorage.setItem(SSO_KEY, JSON.stringify({
    verifier, state, redirect, client_id: provider.client_id, token_endpoint: provider.token_endpoint,
  }));
  const url = new URL(provider.authorization_endpoint);
  for (const [key, value] of Object.entries({
    response_type: "code", client_id: provider.client_id, redirect_uri: redirect, scope: provider.scopes,
    state, code_challenge: challenge, code_challenge_method: "S256",
  })) url.searchParams.set(key, value);
  location.assign(url.toString());
}

// Back from the provider with ?code=...&state=...: the code and the verifier
// for the provider's access token, that for a bridge login.
async function finishSso() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  history.replaceState(null, "", location.pathname + "#/login");
  const pending = JSON.parse(sessionStorage.getItem(SSO_KEY) || "null");
  sessionStorage.removeItem(SSO_KEY);
  if (params.has("error")) throw new Error(`The provider refused the sign-in: ${params.get("error")} ${params.get("error_description") || ""}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("This sign-in was not started here (state mismatch): try again.");
  const reply = await fetch(pending.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"), redirect_uri: pending.redirect,
      client_id: pending.client_id, code_verifier: pending.verifier,
    }),
  });
  const tokens = await reply.json();
  if (!reply.ok || !tokens.access_token) throw new Error(`The provider refused the sign-in: ${tokens.error || reply.status} ${tokens.error_description || ""}`);
  const { data } = await api("POST", "/v1/auth/oidc/token", { token: tokens.access_token });
  await signedIn(data);
  return true;
}

async function signedIn(pair) {
  session.access = pair.access_token;
  session.refresh = pair.refresh_token;
  session.me = (await api("GET", "/v1/auth/me")).data;
  document.getElementById("who").textContent = `${session.me.name} (${session.me.role})`;
  document.getElementById("nav").hidden = false;
  document.getElementById("nav-users").hidden = session.me.role !== "admin";
  say("");
  location.hash = "#/jobs";
}

async function jobsPage() {
  const filter = el("select", { id: "state-filter", "aria-label": "State" },
    ...["", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"].map((s) => el("option", { value: s }, s || "every state")));
  const body = el("tbody");
  const more = el("button", { type: "button", class: "secondary", hidden: true }, "More");
  let limit = 25;
  async function load() {
    const query = new URLSearchParams({ limit: String(limit) });
    if (filter.value) query.set("state", filter.value);
    if (session.me && session.me.role !== "admin") query.set("user", session.me.name);
    const { data } = await api("GET", "/v1/jobs?" + query);
    body.replaceChildren(...data.jobs.map((job) => el("tr", { "data-job": job.id },
      el("td", {}, el("a", { href: `#/jobs/${job.id}` }, String(job.id))),
      el("td", {}, job.name),
      el("td", {}, stateCell(job.state)),
      el("td", {}, job.user),
      el("td", {}, job.started_at ? duration((job.ended_at || Date.now() / 1000) - job.started_at) : "-"),
      el("td", {}, job.nodes || "-"),
      el("td", {}, when(job.submitted_at)))));
    if (!data.jobs.length) body.append(el("tr", {}, el("td", { colspan: 7 }, "No jobs here yet: ", el("a", { href: "#/submit" }, "submit one"), ".")));
    more.hidden = !data.next_cursor;
  }
  filter.addEventListener("change", () => load().catch(fail));
  more.addEventListener("click", () => { limit += 25; load().catch(fail); });
  render("My jobs",
    el("div", { class: "row" }, el("label", { for: "state-filter" }, "Show", filter)),
    el("table", { id: "jobs" },
      el("thead", {}, el("tr", {}, ...["Job", "Name", "State", "User", "Run time", "Nodes", "Submitted"].map((h) => el("th", { scope: "col" }, h)))),
      body),
    more);
  await load();
  timer = setInterval(() => load().catch(fail), 2000);
}

async function jobPage(id) {
  const facts = el("dl", { id: "job-facts" });
  const timeline = el("tbody");
  const output = el("pre", { id: "job-output", "aria-label": "Output" });
  const health = el("div", { id: "job-health" });
  const result = el("div", { id: "job-result" });
  const cancel = el("button", { type: "button", id: "cancel", hidden: true }, "Cancel job");
  const script = el("pre", { id: "job-script" });
  const spec = el("pre", { id: "job-spec" });
  let offset = 0;
  let finished = false;
  let healthDone = false;
  let healthTries = 0;
  let resultDone = false;
  cancel.addEventListener("click", async () => {
    try {
      await api("DELETE", `/v1/jobs/${id}`);
      say(`Job ${id} cancelled.`);
    } catch (err) {
      fail(err);
    }
  });
  async function load() {
    const { data: job } = await api("GET", `/v1/jobs/${id}`);
    const pairs = [
      ["Name", job.name], ["State", stateCell(job.state)], ["Reason", job.reason || "-"],
      ["User", `${job.user} (runs as ${job.unix_user})`], ["SLURM job", job.slurm_job_id ?? "-"],
      ["Partition", job.partition || "-"], ["Nodes", job.nodes || "-"], ["Submitted", when(job.submitted_at)],
      ["Started", when(job.started_at)], ["Ended", when(job.ended_at)], ["Exit code", job.exit_code ?? "-"],
    ];
    if (job.failure) pairs.push(["Failure", `${job.failure.class}: ${job.failure.reason}`]);
    facts.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    script.textContent = job.script;
    spec.textContent = JSON.stringify(job.spec, null, 2);
    cancel.hidden = job.finished;
    const { data: events } = await api("GET", `/v1/jobs/${id}/events`);
    timeline.replaceChildren(...events.map((e) => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, stateCell(e.state)), el("td", {}, e.reason || ""))));
    try {
      const { data, headers } = await api("GET", `/v1/jobs/${id}/output?offset=${offset}`);
      const next = Number(headers.get("x-next-offset"));
      if (typeof data === "string" && data.length) output.append(document.createTextNode(data));
      if (next > offset) offset = next;
    } catch (err) {
      if (err.status !== 404) throw err; // 404: no output yet
    }
    if (job.finished) {
      finished = true;
      // Health records reach the bridge shortly after the job ends: look
      // again for a while until they are there.
      if (!healthDone) {
        const shown = await showHealth();
        healthDone = shown || !(job.spec && job.spec.health_report) || ++healthTries >= 30;
      }
      if (!resultDone) resultDone = !(job.spec && job.spec.kernel) || (await showResult());
    }
  }
  /** True once the job's health records are shown. */
  async function showHealth() {
    try {
      const { data } = await api("GET", `/v1/jobs/${id}/health`);
      const rows = [];
      for (const step of data.steps || []) {
        for (const node of step.nodes || []) {
          const tasks = node.tasks || [];
          const ok = tasks.filter((t) => t.exit_code === 0 && !t.signal).length;
          rows.push(el("tr", {}, el("td", {}, step.step), el("td", {}, node.node), el("td", {}, `${ok} of ${tasks.length} ok`)));
        }
      }
      const head = el("thead", {}, el("tr", {}, ...["Step", "Node", "Tasks"].map((h) => el("th", { scope: "col" }, h))));
      health.replaceChildren(el("p", { id: "health-summary" }, `${data.tasks_ok} of ${data.tasks} tasks ok`),
        rows.length ? el("table", {}, head, el("tbody", {}, rows)) : "");
      return data.tasks > 0;
    } catch (err) {
      health.textContent = err.message;
      return true;
    }
  }
  /** True once the result (or why there is none) is shown. */
  async function showResult() {
    try {
      const { data } = await api("GET", `/v1/jobs/${id}/result`);
      result.replaceChildren(el("p", { id: "result-verified" }, data.verified ? "Verified: yes" : "Verified: NO"),
        el("pre", {}, JSON.stringify(data, null, 2)));
      return true;
    } catch (err) {
      result.textContent = err.message;
      return err.status !== 409; // 409: still being collated
    }
  }
  render(`Job ${id}`, cancel, facts,
    el("h2", {}, "Timeline"), el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "State"), el("th", { scope: "col" }, "Reason"))), timeline),
    el("h2", {}, "Output"), output,
    el("h2", {}, "Health"), health,
    el("h2", {}, "Result"), result,
    el("h2", {}, "Request"), spec,
    el("h2", {}, "Script"), script);
  try {
    await load();
  } catch (err) {
    if (err.status === 404) {
      render(`Job ${id}`, el("p", { class: "error", id: "not-found" }, `No job ${id} (or it is not yours).`));
      return;
    }
    throw err;
  }
  timer = setInterval(() => {
    if (!finished || !healthDone || !resultDone) load().catch(fail);
  }, 1000);
}

function submitPage() {
  const kernel = el("select", { id: "kernel" }, ...["pi", "jacobi", "matmul", "cg", "osu", "allreduce"].map((k) => el("option", { value: k }, k)));
  const params = el("input", { id: "params", value: '{"samples": 1000000}' });
  const nodes = el("input", { id: "nodes", type: "number", min: 1, value: 1 });
  const ntasks = el("input", { id: "ntasks", type: "number", min: 1, value: 2 });
  const minutes = el("input", { id: "minutes", type: "number", min: 1, value: 5 });
  const dir = el("input", { id: "workdir", placeholder: "your home directory" });
  const health = el("input", { id: "health", type: "checkbox", checked: true });
  const form = el("form", { on: { submit: async (event) => {
    event.preventDefault();
    try {
      const body = { kernel: kernel.value, params: JSON.parse(params.value || "{}"), nodes: Number(nodes.value), ntasks: Number(ntasks.value), time_limit: Number(minutes.value), health_report: health.checked };
      if (dir.value) body.working_dir = dir.value;
      const { data } = await api("POST", "/v1/jobs", body);
      say(`Job ${data.id} submitted.`);
      location.hash = `#/jobs/${data.id}`;
    } catch (err) {
      fail(err);
    }
  } } },
    el("label", { for: "kernel" }, "Kernel", kernel),
    el("label", { for: "params" }, "Parameters (JSON)", params),
    el("div", { class: "row" }, el("label", { for: "nodes" }, "Nodes", nodes), el("label", { for: "ntasks" }, "Ranks", ntasks), el("label", { for: "minutes" }, "Time limit (minutes)", minutes)),
    el("label", { for: "workdir" }, "Working directory", dir),
    el("label", { for: "health" }, el("span", {}, health, " Health reports per task and node")),
    el("button", { type: "submit", id: "submit-job" }, "Submit"));
  render("Submit a kernel job", form);
}

async function nodesPage() {
  const body = el("tbody");
  const admin = session.me && session.me.role === "admin";
  async function act(name, action) {
    const reason = action === "drain" ? window.prompt(`Why drain ${name}?`) : "resumed from the dashboard";
    if (!reason) return;
    try {
      await api("POST", `/v1/nodes/${encodeURIComponent(name)}/${action}`, { reason });
      say(`${name}: ${action} asked.`);
      await load();
    } catch (err) {
      fail(err);
    }
  }
  async function load() {
    const { data } = await api("GET", "/v1/nodes");
    body.replaceChildren(...data.nodes.map((n) => el("tr", {},
      el("td", {}, n.name), el("td", {}, n.state), el("td", {}, `${n.cpus_allocated}/${n.cpus_total}`),
      el("td", {}, n.load ?? "-"), el("td", {}, n.free_memory_mb !== null && n.free_memory_mb !== undefined ? `${n.free_memory_mb} / ${n.memory_mb} MB` : "-"),
      el("td", {}, (n.running_jobs || []).length), el("td", {}, n.health_age_s != null ? `${duration(n.health_age_s)} ago` : "-"),
      el("td", {}, n.reason || ""),
      admin ? el("td", {}, el("button", { type: "button", class: "secondary", on: { click: () => act(n.name, n.state.startsWith("drain") ? "resume" : "drain") } }, n.state.startsWith("drain") ? "Resume" : "Drain")) : null)));
  }
  const heads = ["Node", "State", "CPUs", "Load", "Free memory", "Jobs", "Last health", "Reason"].concat(admin ? ["Action"] : []);
  render("Nodes", el("table", { id: "nodes" }, el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { scope: "col" }, h)))), body));
  await load();
  timer = setInterval(() => load().catch(fail), 3000);
}

const SVG = "http://www.w3.org/2000/svg";

/** A small bar chart (SVG built node by node): one bar per [label, value]. */
function barChart(id, title, bars, unit) {
  const width = 360, height = 150, pad = 24;
  const max = Math.max(1, ...bars.map(([, v]) => v));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("id", id);
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 30}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: ` + bars.map(([l, v]) => `${l} ${v}${unit}`).join(", "));
  const step = (width - pad) / Math.max(1, bars.length);
  bars.forEach(([label, value], i) => {
    const h = Math.round((value / max) * (height - pad));
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", String(pad + i * step + 2));
    rect.setAttribute("y", String(height - h));
    rect.setAttribute("width", String(Math.max(2, step - 4)));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "bar");
    const caption = document.createElementNS(SVG, "title");
    caption.textContent = `${label}: ${value}${unit}`;
    rect.append(caption);
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", String(pad + i * step + step / 2));
    text.setAttribute("y", String(height + 16));
    text.setAttribute("text-anchor", "middle");
    text.setAttribute("class", "axis");
    text.textContent = label;
    const count = document.createElementNS(SVG, "text");
    count.setAttribute("x", String(pad + i * step + step / 2));
    count.setAttribute("y", String(Math.max(12, height - h - 4)));
    count.setAttribute("text-anchor", "middle");
    count.setAttribute("class", "axis");
    count.textContent = `${value}${unit}`;
    svg.append(rect, text, count);
  });
  return el("figure", {}, el("figcaption", {}, title), svg);
}

/** The cluster at a glance, from the public API only (the last 200 jobs
 *  the caller may see, and the nodes). */
async function overviewPage() {
  const { data: page } = await api("GET", "/v1/jobs?limit=200" + (session.me.role === "admin" ? "" : `&user=${encodeURIComponent(session.me.name)}`));
  const { data: nodes } = await api("GET", "/v1/nodes");
  const jobs = page.jobs;
  const byState = {};
  for (const job of jobs) byState[job.state] = (byState[job.state] || 0) + 1;
  const waits = jobs.filter((j) => j.started_at).map((j) => j.started_at - j.submitted_at).sort((a, b) => a - b);
  const quantile = (q) => (waits.length ? Math.round(waits[Math.min(waits.length - 1, Math.floor(q * waits.length))]) : 0);
  const now = Date.now() / 1000;
  const hours = [];
  for (let h = 11; h >= 0; h--) {
    const from = now - (h + 1) * 3600, to = now - h * 3600;
    hours.push([h === 0 ? "now" : `-${h}h`, jobs.filter((j) => j.submitted_at >= from && j.submitted_at < to).length]);
  }
  const cpus = nodes.nodes.reduce((acc, n) => [acc[0] + n.cpus_allocated, acc[1] + n.cpus_total], [0, 0]);
  render("Cluster overview",
    el("p", { id: "overview-summary" }, `${nodes.nodes.length} nodes, ${cpus[0]} of ${cpus[1]} CPUs allocated; the last ${jobs.length} jobs:`),
    el("div", { class: "charts" },
      barChart("chart-states", "Jobs by state", Object.entries(byState).sort(), ""),
      barChart("chart-wait", "Queue wait (seconds)", [["p50", quantile(0.5)], ["p90", quantile(0.9)], ["max", quantile(1)]], "s"),
      barChart("chart-submissions", "Submissions per hour", hours, "")));
}

/** Admins: every account, its role and Unix mapping, changed in place. */
async function usersPage() {
  const body = el("tbody");
  async function change(name, patch) {
    try {
      await api("PATCH", `/v1/users/${encodeURIComponent(name)}`, patch);
      say(`${name} changed.`);
      await load();
    } catch (err) {
      fail(err);
    }
  }
  async function load() {
    const { data } = await api("GET", "/v1/users");
    body.replaceChildren(...data.map((u) => {
      const role = el("select", { "aria-label": `Role of ${u.name}`, on: { change: (e) => change(u.name, { role: e.target.value }) } },
        ...["admin", "user", "viewer"].map((r) => el("option", { value: r, selected: r === u.role }, r)));
      const unix = el("input", { "aria-label": `Unix account of ${u.name}`, value: u.unix_user || "", size: 12 });
      const map = el("button", { type: "button", class: "secondary", on: { click: () => change(u.name, { unix_user: unix.value || null }) } }, "Map");
      const toggle = el("button", { type: "button", class: "secondary", on: { click: () => change(u.name, { disabled: !u.disabled }) } }, u.disabled ? "Enable" : "Disable");
      return el("tr", { "data-user": u.name },
        el("td", {}, u.name), el("td", {}, role), el("td", {}, el("span", { class: "row" }, unix, map)),
        el("td", {}, u.unix_mapped_by || "-"), el("td", {}, u.disabled ? "disabled" : "active", " ", toggle));
    }));
  }
  render("Users", el("table", { id: "users" },
    el("thead", {}, el("tr", {}, ...["Name", "Role", "Unix account", "Mapped by", "State"].map((h) => el("th", { scope: "col" }, h)))), body));
  await load();
}

function fail(err) {
  if (err instanceof ApiError && err.status === 401) return signedOut("Your sign-in expired: sign in again.");
  say(err.message || String(err), true);
}

async function route() {
  clearInterval(timer);
  timer = null;
  if (document.getElementById("status").className !== "error") say("");
  const hash = location.hash || "#/jobs";
  if (!session.access && hash !== "#/login") {
    location.hash = "#/login";
    return;
  }
  try {
    const job = hash.match(/^#\/jobs\/(\d+)$/);
    if (hash === "#/login") loginPage();
    else if (job) await jobPage(Number(job[1]));
    else if (hash === "#/submit") submitPage();
    else if (hash === "#/nodes") await nodesPage();
    else if (hash === "#/overview") await overviewPage();
    else if (hash === "#/users") await usersPage();
    else await jobsPage();
  } catch (err) {
    fail(err);
  }
}

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api("POST", "/v1/auth/logout", { refresh_token: session.refresh });
  } catch (err) {
    // Signed out here either way.
  }
  signedOut("Signed out.");
});
window.addEventListener("hashchange", route);
finishSso().then((done) => { if (!done) route(); }).catch((err) => { signedOut(); say(err.message, true); route(); });
