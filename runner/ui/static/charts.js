// tvo ui: plotly.js figures from the API's aggregates, and their SVG/PNG downloads.
"use strict";

// Okabe and Ito's colour-blind-safe palette, then plotly's own
const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000",
                 "#F0E442", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const PLOT_CONFIG = {responsive: true, displaylogo: false,
                     modeBarButtonsToRemove: ["toImage", "select2d", "lasso2d"]};

const plotlyReady = new Promise(resolve => {
  if (window.Plotly) resolve();
  else document.getElementById("plotly").addEventListener("load", () => resolve());
});

function colour(index) { return COLOURS[index % COLOURS.length]; }

function translucent(hex, alpha) {
  const value = parseInt(hex.slice(1), 16);
  return `rgba(${value >> 16}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
}

const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];

// One colour per value of the first grouping setting (the strategy when it is one, as the
// report's plots colour them), one line style per combination of the others.
function curvesFigure(answer) {
  const traces = [];
  const colourOf = {};
  const hues = [...new Set(answer.groups.map(group => group.hue))];
  const facets = [...new Set(answer.groups.map(group => group.facet))];
  answer.groups.forEach(group => {
    const line = colour(hues.indexOf(group.hue));
    const dash = DASHES[facets.indexOf(group.facet) % DASHES.length];
    colourOf[group.label] = line;
    const hasBand = group.low.some(value => value !== null);
    if (hasBand) {  // the band: upper edge, then the lower edge filled up to it
      traces.push({x: group.epochs, y: group.high, mode: "lines", line: {width: 0},
                   hoverinfo: "skip", showlegend: false, legendgroup: group.label});
      traces.push({x: group.epochs, y: group.low, mode: "lines", line: {width: 0},
                   fill: "tonexty", fillcolor: translucent(line, 0.18), hoverinfo: "skip",
                   showlegend: false, legendgroup: group.label});
    }
    traces.push({x: group.epochs, y: group.mean, mode: "lines+markers", name: group.label,
                 legendgroup: group.label, line: {color: line, width: 2, dash}, marker: {size: 4},
                 hovertemplate: `${group.label}<br>epoch %{x}<br>mean %{y:.4f} (${group.jobs} jobs)<extra></extra>`});
  });
  for (const series of answer.series || []) {
    traces.push({x: series.epochs, y: series.values, mode: "lines", showlegend: false,
                 legendgroup: series.group, opacity: 0.35,
                 line: {color: colourOf[series.group] || "#888", width: 1},
                 hovertemplate: `${series.job_id}<br>epoch %{x}: %{y:.4f}<extra></extra>`});
  }
  const grouped = answer.by.length ? `grouped by ${answer.by.join(", ")}` : "all jobs";
  return {data: traces, layout: {
    title: {text: `${answer.metric} over epochs: mean over done jobs, 95 % CI (${grouped})`,
            font: {size: 14}},
    xaxis: {title: {text: "epoch"}, zeroline: false}, yaxis: {title: {text: answer.metric}},
    legend: {orientation: "h", y: -0.18}, margin: {t: 50, r: 20}, hovermode: "closest"}};
}

function parallelFigure(answer) {
  return {data: [{type: "parcoords", dimensions: answer.dimensions.map(dimension => ({
      label: dimension.label, values: dimension.values, tickvals: dimension.tickvals,
      ticktext: dimension.ticktext})),
    line: {color: answer.color, colorscale: "Viridis", showscale: true,
           reversescale: !answer.higher_is_better,
           colorbar: {title: {text: `final ${answer.metric}`}}}}],
    layout: {title: {text: `Configurations: final ${answer.metric}, mean over seeds`,
                     font: {size: 14}}, margin: {t: 80, l: 160, r: 80}}};
}

function tuningFigure(answer) {
  const traces = [];
  answer.curves.forEach((curve, index) => {
    const line = colour(index);
    if (curve.lower.some(value => value !== null)) {
      traces.push({x: curve.budgets, y: curve.upper, mode: "lines", showlegend: false,
                   legendgroup: curve.method, line: {color: line, width: 1, dash: "dot"},
                   hoverinfo: "skip"});
      traces.push({x: curve.budgets, y: curve.lower, mode: "lines", showlegend: false,
                   legendgroup: curve.method, line: {color: line, width: 1, dash: "dot"},
                   fill: "tonexty", fillcolor: translucent(line, 0.1), hoverinfo: "skip"});
    }
    traces.push({x: curve.budgets, y: curve.expected, mode: "lines+markers", name: curve.method,
                 legendgroup: curve.method, line: {color: line, width: 2}, marker: {size: 4}});
  });
  return {data: traces, layout: {
    title: {text: `Tuning curves: expected best ${answer.select} of k configurations ` +
                  "(Dodge et al. 2019), 80 % simultaneous bands (Lourie et al. 2024)",
            font: {size: 13}},
    xaxis: {title: {text: "configurations tried (tuning budget)"}, dtick: 1},
    yaxis: {title: {text: `expected best ${answer.select}`}},
    legend: {orientation: "h", y: -0.2}, margin: {t: 60, r: 20}}};
}

async function drawChart(div, figure) {
  await plotlyReady;
  return Plotly.react(div, figure.data, figure.layout, PLOT_CONFIG);
}

function downloadButtons(chartId, filename) {
  const save = format => () => Plotly.downloadImage(document.getElementById(chartId),
    {format, filename, width: 1100, height: 560});
  return el("span", {class: "downloads"},
    el("button", {type: "button", id: `${chartId}-svg`, onclick: save("svg")}, "SVG"), " ",
    el("button", {type: "button", id: `${chartId}-png`, onclick: save("png")}, "PNG"));
}
