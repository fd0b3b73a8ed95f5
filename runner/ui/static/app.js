// tvo ui: the page. Talks only to this server's JSON API (token in the X-TVO-Token header);
// routes by the URL's hash: #/ (grids), #/start (start a grid), #/grid/NAME (one grid).
"use strict";

const TOKEN = (document.querySelector('meta[name="tvo-token"]') || {}).content || "";
const REFRESH_MS = 2500;
let refreshTimer = null;
let session = null;

async function api(path, body) {
  const options = {headers: {"X-TVO-Token": TOKEN}};
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({error: `Error: HTTP ${response.status}`}));
  if (!response.ok) {
    const error = new Error(answer.error || `Error: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// replaceChildren without the null, undefined and false that optional parts leave
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter(c => c !== null && c !== undefined && c !== false));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

function cell(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const size = Math.abs(value);
    return size >= 1e-3 && size < 1e5 ? String(Number(value.toPrecision(4))) : value.toPrecision(4);
  }
  if (Array.isArray(value)) return "[" + value.map(cell).join(", ") + "]";
  return String(value);
}

const STATES = ["done", "running", "failed", "diverged", "cancelled", "pending"];

function countsLine(counts) {
  return el("span", {class: "counts"},
    STATES.map(state => el("span", {class: `state-${state}`, dataset: {state}},
                           `${state} ${counts[state] || 0}`)));
}

function progressBar(fraction) {
  return el("span", {class: "bar", title: `${Math.round(100 * fraction)} %`},
            el("span", {style: `width: ${(100 * fraction).toFixed(1)}%`}));
}

function etaText(line) {
  if (line.starting) return "starting";
  if (!line.going) return line.total && line.finished === line.total ? "finished" : "";
  return line.eta_s === null ? "ETA estimating" : `ETA ${duration(line.eta_s)}`;
}

function setRefresh(callback) {
  clearInterval(refreshTimer);
  refreshTimer = callback ? setInterval(callback, REFRESH_MS) : null;
}

// -- the grids -------------------------------------------------------------------------------

async function showGrids(view) {
  view.replaceChildren(el("h1", {}, "Grids"), el("div", {id: "grids"}, "loading..."));
  const draw = async () => {
    let answer;
    try {
      answer = await api("/api/grids");
    } catch (error) {
      document.getElementById("grids").replaceChildren(el("div", {class: "error"}, error.message));
      return;
    }
    const target = document.getElementById("grids");
    if (!target) return;
    if (!answer.grids.length) {
      target.replaceChildren(el("p", {class: "note"}, `No grids under ${session.out_root} yet. `,
                                el("a", {href: "#/start"}, "Start one.")));
      return;
    }
    const rows = answer.grids.map(line => el("tr", {
        class: "link", dataset: {grid: line.name},
        onclick: () => { location.hash = `#/grid/${encodeURIComponent(line.name)}`; }},
      el("td", {class: "name"}, line.name), el("td", {}, line.total),
      el("td", {}, progressBar(line.progress), ` ${line.finished}/${line.total}`),
      STATES.map(state => el("td", {class: `state-${state}`, dataset: {state}},
                             (line.counts || {})[state] || 0)),
      el("td", {class: "eta"}, etaText(line))));
    target.replaceChildren(el("div", {class: "scroll"}, el("table", {id: "grids-table"},
      el("thead", {}, el("tr", {}, el("th", {class: "name"}, "grid"), el("th", {}, "jobs"),
        el("th", {}, "progress"), STATES.map(state => el("th", {}, state)), el("th", {}, ""))),
      el("tbody", {}, rows))));
  };
  await draw();
  setRefresh(draw);
}

// -- starting a grid ---------------------------------------------------------------------------

function startForm() {
  const shipped = session.shipped.map(name => el("option", {value: name,
                                                          selected: name === "quickstart"}, name));
  return el("form", {id: "start-form", onsubmit: event => event.preventDefault()},
    el("div", {class: "row"},
      el("label", {}, el("input", {type: "radio", name: "source", value: "shipped", checked: true}),
         " a shipped grid "), el("select", {id: "start-grid"}, shipped)),
    el("div", {class: "row"},
      el("label", {}, el("input", {type: "radio", name: "source", value: "upload", id: "source-upload"}),
         " or a grid file "), el("input", {type: "file", id: "start-upload", accept: ".yaml,.yml"})),
    el("div", {class: "row"}, el("label", {for: "overrides"},
      "Overrides and sweeps, one per line (as after ", el("code", {}, "tvo run GRID"), "):"),
      el("br"), el("textarea", {id: "overrides", rows: 4,
                                placeholder: "seed=range(5)\nlr=0.1,0.5\nepochs=2"})),
    el("div", {class: "row controls"},
      el("label", {}, "backend ", el("select", {id: "backend"},
         session.backends.map(name => el("option", {value: name, selected: name === "ray"}, name)))),
      el("label", {}, "max parallel ", el("input", {id: "max-parallel", type: "number", min: 1,
                                                    style: "width: 5em"})),
      el("label", {}, "samples ", el("input", {id: "samples", type: "number", min: 1,
                                               style: "width: 5em"})),
      el("label", {}, "retries ", el("input", {id: "retries", type: "number", min: 0, value: 0,
                                               style: "width: 4em"}))),
    el("div", {class: "row"},
      el("button", {type: "button", id: "check-button", class: "primary"}, "Check (dry run)"), " ",
      el("button", {type: "button", id: "start-button", disabled: true}, "Start")),
    el("div", {id: "start-error"}), el("div", {id: "plan"}));
}

async function readRequest() {
  const source = document.querySelector('input[name="source"]:checked').value;
  const request = {
    overrides: document.getElementById("overrides").value.split("\n").map(w => w.trim()).filter(Boolean),
    backend: document.getElementById("backend").value,
    max_parallel: document.getElementById("max-parallel").value || null,
    samples: document.getElementById("samples").value || null,
    retries: document.getElementById("retries").value || 0,
  };
  if (source === "upload") {
    const file = document.getElementById("start-upload").files[0];
    request.upload = file ? {name: file.name, text: await file.text()} : {name: "", text: ""};
  } else {
    request.grid = document.getElementById("start-grid").value;
  }
  return request;
}

function planView(plan) {
  const keys = plan.swept_keys;
  const rows = plan.rows.map(row => el("tr", {}, el("td", {class: "name"}, row.job_id),
    keys.map(key => el("td", {class: "name"}, cell(row[key]))),
    el("td", {class: `state-${row.state}`}, row.state)));
  return el("div", {class: "panel", id: "plan-view"},
    el("p", {}, el("b", {}, plan.grid), `: ${plan.jobs} jobs -> ${plan.grid_dir} `,
       el("span", {class: "note"}, "(dry run: nothing written)")),
    plan.description ? el("p", {class: "note"}, plan.description) : null,
    el("p", {}, "swept: ", plan.swept), plan.compare ? el("p", {}, "compare: ", plan.compare) : null,
    el("p", {}, plan.packing), el("p", {class: "note"}, "command: ", el("code", {}, plan.command)),
    el("div", {class: "scroll"}, el("table", {id: "plan-table"},
      el("thead", {}, el("tr", {}, el("th", {class: "name"}, "job_id"),
        keys.map(key => el("th", {class: "name"}, key)), el("th", {}, "state"))),
      el("tbody", {}, rows))),
    plan.more ? el("p", {class: "note"}, `... and ${plan.more} more jobs`) : null);
}

async function showStart(view) {
  setRefresh(null);
  view.replaceChildren(el("h1", {}, "Start a grid"), el("p", {class: "note"},
    "Validated as tvo run validates it; check it first, then start it. The run is a process of ",
    "its own: it goes on when this page or the server closes, and tvo status sees it."),
    startForm());
  const check = document.getElementById("check-button");
  const startButton = document.getElementById("start-button");
  const errorBox = document.getElementById("start-error");
  const planBox = document.getElementById("plan");
  let checked = null;
  const invalidate = () => { checked = null; startButton.disabled = true; };
  document.getElementById("start-form").addEventListener("input", invalidate);
  document.getElementById("start-form").addEventListener("change", invalidate);
  check.addEventListener("click", async () => {
    errorBox.replaceChildren();
    planBox.replaceChildren(el("p", {class: "note"}, "checking..."));
    const request = await readRequest();
    try {
      const plan = await api("/api/plan", request);
      planBox.replaceChildren(planView(plan));
      checked = request;
      startButton.disabled = false;
    } catch (error) {
      planBox.replaceChildren();
      errorBox.replaceChildren(el("div", {class: "error", id: "start-error-line"}, error.message));
    }
  });
  startButton.addEventListener("click", async () => {
    if (!checked) return;
    startButton.disabled = true;
    try {
      const started = await api("/api/start", checked);
      location.hash = `#/grid/${encodeURIComponent(started.grid)}`;
    } catch (error) {
      errorBox.replaceChildren(el("div", {class: "error", id: "start-error-line"}, error.message));
    }
  });
}

// -- routing -------------------------------------------------------------------------------

async function route() {
  const view = document.getElementById("view");
  const hash = location.hash || "#/";
  if (hash.startsWith("#/grid/")) {
    await showGrid(view, decodeURIComponent(hash.slice("#/grid/".length)));
  } else if (hash === "#/start") {
    await showStart(view);
  } else {
    await showGrids(view);
  }
}

async function main() {
  if (!TOKEN) {
    document.getElementById("no-token").hidden = false;
    return;
  }
  try {
    session = await api("/api/session");
  } catch (error) {
    document.getElementById("view").replaceChildren(el("div", {class: "error"}, error.message));
    return;
  }
  document.getElementById("out-root").textContent = session.out_root;
  window.addEventListener("hashchange", route);
  await route();
}

main();
