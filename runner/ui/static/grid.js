// tvo ui: one grid. Its counts, progress and runs (refreshed), and tabs: curves, final metrics,
// parallel coordinates, the comparison (grids with compare:), and the jobs with their logs.
"use strict";

let grid = null;  // what the open grid view shows and remembers

function gridPath(suffix) { return `/api/grids/${encodeURIComponent(grid.name)}${suffix || ""}`; }

async function showGrid(view, name) {
  grid = {name, detail: null, version: null, tab: null, chosen: false, drawn: null, tabsKey: "",
          metric: null, by: null, seeds: false,
          table: {level: "job", sort: null, desc: false, filters: {}, offset: 0},
          jobs: {state: "", offset: 0, selected: null}};
  view.replaceChildren(el("h1", {id: "grid-name"}, name), el("div", {id: "grid-head"}),
                       el("div", {id: "grid-tabs", class: "tabs"}), el("div", {id: "grid-body"}));
  setRefresh(refreshGrid);
  await refreshGrid();
}

async function refreshGrid() {
  const current = grid;
  let detail;
  try {
    detail = await api(gridPath());
  } catch (error) {
    document.getElementById("grid-head").replaceChildren(el("div", {class: "error"}, error.message));
    return;
  }
  if (grid !== current || !document.getElementById("grid-head")) return;  // moved on
  grid.detail = detail;
  drawHead(detail);
  const results = detail.results;
  const tabs = detail.starting ? [] : results ? ["curves", "table", "parallel"].concat(
    results.compare ? ["comparison"] : [], ["jobs"]) : ["jobs"];
  const tabsKey = tabs.join(",");
  if (tabsKey !== grid.tabsKey) {
    grid.tabsKey = tabsKey;
    // the first tab that shows results, unless the user chose one that is still there
    if (!grid.chosen || !tabs.includes(grid.tab)) {
      grid.tab = results && results.compare ? "comparison" : tabs[0];
    }
    drawTabs(tabs);
    grid.version = null;
  }
  const version = results ? results.version : "none";
  if (!grid.tab) {
    fill(document.getElementById("grid-body"));
  } else if (grid.tab === "jobs") {
    await drawTab(false);
  } else if (version !== grid.version) {
    await drawTab();
  }
  grid.version = version;
}

function drawHead(detail) {
  const head = document.getElementById("grid-head");
  const parts = [el("p", {}, el("span", {id: "grid-counts"}, countsLine(detail.counts || {})), " ",
                         progressBar(detail.progress || 0), ` ${detail.finished}/${detail.total} `,
                         el("span", {id: "grid-eta"}, etaText(detail)))];
  if (detail.interrupted) {
    parts.push(el("p", {class: "note"}, `${detail.interrupted} jobs were interrupted (their runner `,
                  "is gone); starting the grid again resumes them from their checkpoints."));
  }
  const unfinished = (detail.counts.running || 0) + (detail.counts.pending || 0);
  if (unfinished && !(detail.cancel && detail.cancel.stopping)) {
    parts.push(el("p", {}, el("button", {type: "button", class: "danger", id: "cancel-grid",
                                         onclick: () => confirmCancel(head, [], unfinished)},
                              "Cancel the grid...")));
  }
  if (detail.cancel) parts.push(cancelView(detail.cancel));
  if (detail.launch) parts.push(launchView(detail.launch));
  if (!detail.results && detail.results_note) {
    parts.push(el("p", {class: "note", id: "results-note"}, detail.results_note));
  }
  const open = head.querySelector("details[open]") !== null;
  const confirming = head.querySelector("#cancel-confirm");
  head.replaceChildren(...parts);
  if (open && head.querySelector("details")) head.querySelector("details").open = true;
  if (confirming) head.append(confirming);
}

function confirmCancel(where, jobs, count) {
  const existing = document.getElementById("cancel-confirm");
  if (existing) existing.remove();
  const what = jobs.length ? `job ${jobs.join(", ")}` : `the ${count} unfinished jobs of ${grid.name}`;
  const box = el("div", {class: "panel", id: "cancel-confirm"},
    `Stop ${what}? Running jobs stop at their epoch end and keep their checkpoint; starting the `,
    "grid again resumes them. ",
    el("button", {type: "button", class: "danger", id: "cancel-yes", onclick: async () => {
      box.replaceChildren("cancelling...");
      try {
        await api(gridPath("/cancel"), {jobs, grace_s: 30});
        box.remove();
        await refreshGrid();
      } catch (error) {
        box.replaceChildren(el("div", {class: "error"}, error.message));
      }
    }}, "Stop"), " ",
    el("button", {type: "button", onclick: () => box.remove()}, "Keep running"));
  where.append(box);
}

function cancelView(cancel) {
  const asked = `Cancel requested for ${cancel.targets} unfinished jobs (${cancel.running} running)`;
  if (cancel.stopping) return el("p", {class: "note", id: "cancel-state"}, `${asked}; stopping...`);
  const report = cancel.report || {};
  const still = (report.still_running || []).length;
  return el("p", {class: "note", id: "cancel-state"}, `${asked}: stopped in ${report.seconds} s` +
    (report.forced ? " (by force after the grace)" : "") +
    (still ? `; ${still} still run elsewhere and stop at their next epoch end` : "") + ".");
}

function launchView(launch) {
  const how = launch.running ? `running (pid ${launch.pid})` : `ended with exit code ${launch.returncode}`;
  return el("div", {class: "panel", id: "launch"},
    el("div", {}, "Started from this page: ", el("code", {}, launch.command), ` — ${how}`),
    el("details", {}, el("summary", {}, `the run's output (${launch.output})`),
       el("pre", {class: "log", id: "launch-output"}, launch.output_tail || "(nothing yet)")));
}

const TAB_NAMES = {curves: "Curves", table: "Final metrics", parallel: "Parallel coordinates",
                   comparison: "Comparison", jobs: "Jobs"};

function drawTabs(tabs) {
  document.getElementById("grid-tabs").replaceChildren(...tabs.map(tab => el("button", {
    type: "button", id: `tab-${tab}`, class: tab === grid.tab ? "active" : null,
    onclick: async () => {
      grid.tab = tab;
      grid.chosen = true;
      drawTabs(tabs);
      await drawTab();
    }}, TAB_NAMES[tab])));
}

async function drawTab(fresh = true) {
  const body = document.getElementById("grid-body");
  const draw = {curves: drawCurves, table: drawTable, parallel: drawParallel,
                comparison: drawComparison, jobs: () => drawJobs(fresh)}[grid.tab];
  if (fresh && grid.drawn !== grid.tab) {  // a first look at a tab may take a moment
    fill(body, el("p", {class: "note"}, "loading..."));
  }
  grid.drawn = grid.tab;
  try {
    await draw(body);
  } catch (error) {
    body.replaceChildren(el("div", {class: "error"}, error.message));
  }
}

function metricSelect(id, onchange) {
  const metrics = grid.detail.results.metrics;
  if (!grid.metric || !metrics.includes(grid.metric)) {
    grid.metric = metrics.includes("test_acc") ? "test_acc" : metrics[0];
  }
  return el("label", {}, "metric ", el("select", {id, onchange: event => {
    grid.metric = event.target.value;
    onchange();
  }}, metrics.map(name => el("option", {value: name, selected: name === grid.metric,
                                        title: session?.metric_descriptions?.[name]}, name))));
}

async function drawCurves(body) {
  const results = grid.detail.results;
  if (grid.by === null) grid.by = results.default_by.slice();
  const redraw = () => drawTab();
  const boxes = results.swept.map(key => el("label", {}, el("input", {
    type: "checkbox", value: key, class: "group-by", checked: grid.by.includes(key),
    onchange: event => {
      grid.by = event.target.checked ? grid.by.concat([key]) : grid.by.filter(k => k !== key);
      redraw();
    }}), ` ${key}`));
  const query = new URLSearchParams({metric: grid.metric || "test_acc", by: grid.by.join(","),
                                     seeds: grid.seeds ? "1" : "0"});
  const controls = el("div", {class: "controls"}, metricSelect("curves-metric", redraw),
    el("span", {}, "group by: ", boxes.length ? boxes : "nothing is swept"),
    el("label", {}, el("input", {type: "checkbox", id: "show-seeds", checked: grid.seeds,
                                 onchange: event => { grid.seeds = event.target.checked; redraw(); }}),
       " each job too"),
    downloadButtons("chart-curves", `${grid.name}-${grid.metric}`));
  query.set("metric", grid.metric);
  const answer = await api(gridPath(`/curves?${query}`));
  const chart = el("div", {class: "chart", id: "chart-curves"});
  const note = answer.series_capped ? el("p", {class: "note"},
    `Each job's line is drawn for the first ${answer.series.length} of ${answer.series_total} jobs.`) : null;
  fill(body, controls, chart, note);
  await drawChart(chart, curvesFigure(answer));
}

async function drawTable(body) {
  const state = grid.table;
  const redraw = () => drawTab();
  const controls = el("div", {class: "controls"}, metricSelect("table-metric", () => {
      state.offset = 0; redraw();
    }),
    el("label", {}, "rows ", el("select", {id: "table-level", onchange: event => {
      state.level = event.target.value; state.sort = null; state.filters = {}; state.offset = 0;
      redraw();
    }}, el("option", {value: "job", selected: state.level === "job"}, "one per job"),
        el("option", {value: "group", selected: state.level === "group"},
           "one per group (grouped as the curves)"))));
  const query = new URLSearchParams({metric: grid.metric, level: state.level,
                                     offset: state.offset, limit: 50});
  if (state.level === "group") query.set("by", (grid.by || grid.detail.results.default_by).join(","));
  if (state.sort) { query.set("sort", state.sort); query.set("desc", state.desc ? "1" : "0"); }
  for (const [column, text] of Object.entries(state.filters)) if (text) query.set(`f.${column}`, text);
  const answer = await api(gridPath(`/table?${query}`));
  const texts = new Set(answer.columns.filter((column, index) =>
    answer.rows.some(row => row[index] !== null && typeof row[index] !== "number")));
  const headers = answer.columns.map(column => el("th", {
    class: texts.has(column) ? "sortable name" : "sortable",
    dataset: {column, order: state.sort === column ? (state.desc ? "desc" : "asc") : null},
    onclick: () => {
      state.desc = state.sort === column ? !state.desc : false;
      state.sort = column; state.offset = 0; redraw();
    }}, column));
  let typing = null;
  const filters = answer.columns.map(column => el("th", {}, el("input", {
    class: "filter", dataset: {column}, value: state.filters[column] || "",
    placeholder: "filter", oninput: event => {
      state.filters[column] = event.target.value; state.offset = 0;
      clearTimeout(typing);
      typing = setTimeout(async () => {
        const focused = column;
        await redraw();
        const input = document.querySelector(`input.filter[data-column="${focused}"]`);
        if (input) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
      }, 350);
    }})));
  const short = answer.labels || {};
  const rows = answer.rows.map(row => el("tr", {}, row.map((value, index) => {
    const column = answer.columns[index];
    const shown = column === "state" ? el("span", {class: `state-${value}`}, value) :
      (short[column] && short[column][value]) || cell(value);
    return el("td", {class: typeof value === "number" ? null : "name",
                     title: short[column] ? value : null}, shown);
  })));
  const last = Math.min(answer.offset + answer.rows.length, answer.total);
  const pager = el("p", {class: "controls", id: "table-pager"},
    el("button", {type: "button", id: "table-previous", disabled: answer.offset === 0,
                  onclick: () => { state.offset = Math.max(0, state.offset - answer.limit); redraw(); }},
       "previous"),
    el("span", {id: "table-range"},
       answer.total ? `rows ${answer.offset + 1}-${last} of ${answer.total}` : "no rows"),
    el("button", {type: "button", id: "table-next", disabled: last >= answer.total,
                  onclick: () => { state.offset += answer.limit; redraw(); }}, "next"));
  body.replaceChildren(controls, el("p", {class: "note"},
    `${grid.metric}: last = at the final epoch, best = the best evaluated epoch ` +
    "(highest, or lowest for losses, NLL and ECE), min and max over the evaluated epochs. " +
    "Filters: text, or >0.9, <=0.5 for numbers."),
    el("div", {class: "scroll"}, el("table", {id: "final-table"},
      el("thead", {}, el("tr", {}, headers), el("tr", {}, filters)), el("tbody", {}, rows))),
    pager);
}

async function drawParallel(body) {
  const answer = await api(gridPath(`/parallel?metric=${encodeURIComponent(grid.metric || "test_acc")}`));
  const chart = el("div", {class: "chart", id: "chart-parallel"});
  body.replaceChildren(el("div", {class: "controls"}, metricSelect("parallel-metric", () => drawTab()),
                          downloadButtons("chart-parallel", `${grid.name}-parallel`)), chart,
    el("p", {class: "note"}, `${answer.lines} configurations` +
       (answer.capped ? ` (the best ${answer.lines} of ${answer.total})` : "") +
       "; drag along an axis to select a range."));
  await drawChart(chart, parallelFigure(answer));
}

async function drawComparison(body) {
  const answer = await api(gridPath("/comparison"));
  const chart = el("div", {class: "chart", id: "chart-tuning"});
  const tables = answer.tables.map((table, index) => [
    el("h2", {}, table.title),
    el("div", {class: "scroll"}, el("table", {id: index ? `comparison-table-${index}` : "selection-table"},
      el("thead", {}, el("tr", {}, table.headers.map(header => el("th", {class: "name"}, header)))),
      el("tbody", {}, table.rows.map(row => el("tr", {}, row.map(value => el("td", {
        class: typeof value === "number" ? null : "name"}, cell(value))))))))]);
  fill(body,
    el("h2", {}, "Verdict"), el("ul", {class: "verdict", id: "verdicts"},
      answer.verdicts.map(text => el("li", {}, text))),
    el("p", {class: "note"}, `Each ${answer.by} tried the same ${answer.budget} configurations of `,
       Object.entries(answer.tune).map(([key, space]) => `${key} ~ ${space}`).join(", "),
       `; the best on ${answer.select} (validation, never test) was trained again with seeds `,
       answer.final_seeds.join(", "), "."),
    answer.notes.map(text => el("p", {class: "note"}, text)),
    tables,
    el("h2", {}, "Tuning curves"), el("div", {class: "controls"},
      downloadButtons("chart-tuning", `${grid.name}-tuning-curves`)), chart);
  await drawChart(chart, tuningFigure(answer));
}

async function drawJobs(fresh) {
  const body = document.getElementById("grid-body");
  const state = grid.jobs;
  const query = new URLSearchParams({state: state.state, offset: state.offset});
  const answer = await api(gridPath(`/jobs?${query}`));
  const rows = answer.jobs.map(job => el("tr", {
    class: "link" + (job.job_id === state.selected ? " selected" : ""), dataset: {job: job.job_id},
    onclick: () => { state.selected = job.job_id; drawJobs(true); }},
    el("td", {class: "name"}, job.job_id),
    el("td", {class: `name state-${job.state}`}, job.state + (job.interrupted ? " (interrupted)" : "") +
       (job.epoch ? ` (epoch ${job.epoch})` : "")),
    el("td", {class: "name"}, job.error || "")));
  const last = Math.min(answer.offset + answer.jobs.length, answer.total);
  const list = el("div", {},
    el("div", {class: "controls"}, el("label", {}, "state ", el("select", {id: "jobs-state",
      onchange: event => { state.state = event.target.value; state.offset = 0; drawJobs(true); }},
      el("option", {value: ""}, "all (problems first)"),
      answer.states.map(name => el("option", {value: name, selected: name === state.state}, name)))),
      el("span", {}, answer.total ? `jobs ${answer.offset + 1}-${last} of ${answer.total}` : "no jobs"),
      el("button", {type: "button", disabled: answer.offset === 0,
                    onclick: () => {
                      state.offset = Math.max(0, state.offset - answer.limit);
                      drawJobs(true);
                    }}, "previous"),
      el("button", {type: "button", disabled: last >= answer.total,
                    onclick: () => { state.offset += answer.limit; drawJobs(true); }}, "next")),
    el("div", {class: "jobs-layout"}, el("div", {class: "jobs-list"}, el("table", {id: "jobs-table"},
      el("thead", {}, el("tr", {}, el("th", {class: "name"}, "job"), el("th", {class: "name"}, "state"),
                         el("th", {class: "name"}, "error"))), el("tbody", {}, rows))),
      el("div", {class: "job-detail", id: "job-detail"})));
  const detail = state.selected ? await jobView(state.selected) : el("p", {class: "note"},
    "Click a job for its settings, error and log.");
  if (grid.tab !== "jobs") return;
  const open = fresh ? null : body.querySelector("#job-view pre.log");
  const scrolled = open ? open.scrollTop : null;
  fill(body, list);
  fill(body.querySelector("#job-detail"), detail);
  const log = body.querySelector("#job-view pre.log");
  if (log && scrolled !== null) log.scrollTop = scrolled;
}

async function jobView(jobId) {
  let job;
  try {
    job = await api(gridPath(`/jobs/${jobId}`));
  } catch (error) {
    return el("div", {class: "error"}, error.message);
  }
  const settings = job.settings ? Object.entries(job.settings) : [];
  const stoppable = job.state === "running" || job.state === "pending";
  const panel = el("div", {class: "panel", id: "job-view"},
    el("h2", {}, `Job ${job.job_id}: `, el("span", {class: `state-${job.state}`, id: "job-state"}, job.state)),
    stoppable ? el("button", {type: "button", class: "danger", id: "cancel-job",
                              onclick: () => confirmCancel(panel, [job.job_id], 1)}, "Cancel this job...") : null,
    job.error ? el("div", {class: "error", id: "job-error"}, job.error) : null,
    settings.length ? el("details", {}, el("summary", {}, "settings"),
      el("table", {}, el("tbody", {}, settings.map(([key, value]) =>
        el("tr", {}, el("td", {class: "name"}, key), el("td", {class: "name"}, cell(value))))))) : null,
    el("h2", {}, "Log"), el("pre", {class: "log", id: "job-log"}, job.log || "(no log yet)"));
  return panel;
}
