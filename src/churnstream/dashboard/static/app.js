// churnstream dashboard: poll /api/state and redraw. No build step; Chart.js is vendored.
"use strict";

const RED = "#c0504d", BLUE = "#4f81bd", GREEN = "#2e8b57", GREY = "#9ca3af";
let refreshMs = 1000;
let charts = null;
let failures = 0;

const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
const fmtNum = (n, d = 1) => (n === null || n === undefined ? "–" : Number(n).toFixed(d));
const fmtMs = (n) => (n === null || n === undefined ? "–" : Number(n).toFixed(n < 10 ? 1 : 0));
const fmtPct = (r) => (r === null || r === undefined ? "–" : (100 * r).toFixed(1) + "%");
const $ = (id) => document.getElementById(id);

function baseOptions(extra) {
  return Object.assign({
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    plugins: { legend: { display: false } },
  }, extra || {});
}

function lineChart(id, color, yTitle, yMax) {
  return new Chart($(id), {
    type: "line",
    data: { labels: [], datasets: [{ data: [], borderColor: color, backgroundColor: color + "22", fill: true, pointRadius: 0, borderWidth: 2, spanGaps: true }] },
    options: baseOptions({
      scales: {
        x: { ticks: { maxTicksLimit: 6, maxRotation: 0 } },
        y: { beginAtZero: true, max: yMax, title: { display: true, text: yTitle } },
      },
    }),
  });
}

function barChart(id, colors, yTitle, yMax, legend) {
  return new Chart($(id), {
    type: "bar",
    data: { labels: [], datasets: colors.map((c, i) => ({ label: legend ? legend[i] : "", data: [], backgroundColor: c })) },
    options: baseOptions({
      plugins: { legend: { display: !!legend } },
      scales: { y: { beginAtZero: true, max: yMax, ticks: { precision: 0 }, title: { display: true, text: yTitle } } },
    }),
  });
}

function makeCharts() {
  return {
    throughput: lineChart("chart-throughput", BLUE, "msg/s"),
    churn: lineChart("chart-churn", RED, "churn rate %", 100),
    contract: barChart("chart-contract", [RED], "churn rate %", 100),
    internet: barChart("chart-internet", [RED], "churn rate %", 100),
    latency: barChart("chart-latency", [BLUE, RED], "ms", undefined, ["inference", "end to end"]),
    dead: barChart("chart-dead", [GREY], "dead letters"),
  };
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function setSeries(chart, labels, values) {
  chart.data.labels = labels;
  chart.data.datasets[0].data = values;
  chart.update("none");
}

function segmentChart(chart, groups) {
  const levels = Object.keys(groups).filter((k) => groups[k].count > 0);
  chart.data.labels = levels.map((k) => `${k} (n=${groups[k].count.toLocaleString("en-US")})`);
  chart.data.datasets[0].data = levels.map((k) => (groups[k].churn_rate === null ? 0 : 100 * groups[k].churn_rate));
  chart.update("none");
}

function render(s) {
  if (!charts) charts = makeCharts();
  const info = s.info || {};
  const models = Object.keys(s.models || {});
  $("info").textContent = [
    info.broker ? `broker ${info.broker}` : null,
    info.predictions_topic ? `predictions ${info.predictions_topic}` : null,
    info.raw_topic ? `inputs ${info.raw_topic}` : null,
    info.deadletter_topic ? `dead letters ${info.deadletter_topic}` : null,
    models.length ? `model ${models.join(", ")}` : null,
  ].filter(Boolean).join(" · ");

  const age = s.last_message_age_s;
  const status = $("status");
  if (age === null) { status.className = "pill pill-wait"; status.textContent = "waiting for data"; }
  else if (age < 10) { status.className = "pill pill-live"; status.textContent = "live"; }
  else { status.className = "pill pill-wait"; status.textContent = `idle ${Math.round(age)} s`; }

  const t = s.totals;
  $("kpi-predictions").textContent = fmtInt(t.predictions);
  $("kpi-throughput").textContent = fmtNum(s.throughput_now, 1);
  const rates = s.series.churn_rate.filter((r) => r !== null);
  $("kpi-churn-now").textContent = fmtPct(rates.length ? rates[rates.length - 1] : null);
  $("kpi-churn-all").textContent = `overall ${fmtPct(t.churn_rate)} of ${fmtInt(t.predictions)}`;
  const e2e = s.latency_ms.end_to_end, inf = s.latency_ms.inference;
  $("kpi-latency").textContent = `${fmtMs(e2e.p50)} / ${fmtMs(e2e.p95)} / ${fmtMs(e2e.p99)}`;
  $("kpi-inference").textContent = `inference p50 ${fmtMs(inf.p50)} · p99 ${fmtMs(inf.p99)} ms`;

  const scorer = s.scorer || {};
  $("kpi-lag").textContent = scorer.ok && scorer.lag !== null && scorer.lag !== undefined ? fmtInt(scorer.lag) : "–";
  let lagSource = scorer.error ? "scorer unreachable" : "no scorer metrics";
  if (scorer.ok && scorer.source === "metrics") {
    lagSource = "scorer /metrics" + (scorer.rate !== undefined ? ` · ${fmtNum(scorer.rate)} msg/s` : "");
    const psi = Object.values(scorer.drift_psi || {});
    if (psi.length) lagSource += ` · max PSI ${Math.max(...psi).toFixed(2)}${scorer.drift_detected ? " (drift!)" : ""}`;
  } else if (scorer.ok) {
    lagSource = `committed offsets of ${scorer.group}`;
  }
  $("kpi-lag-source").textContent = lagSource;
  $("kpi-dead").textContent = fmtInt(s.dead_letters.total);
  $("kpi-dups").textContent = `${fmtInt(t.duplicates_skipped)} duplicate prediction(s) skipped`;

  const labels = s.series.t.map(clock);
  setSeries(charts.throughput, labels, s.series.throughput);
  setSeries(charts.churn, labels, s.series.churn_rate.map((r) => (r === null ? null : 100 * r)));
  segmentChart(charts.contract, s.by_contract);
  segmentChart(charts.internet, s.by_internet_service);

  charts.latency.data.labels = ["p50", "p95", "p99"];
  charts.latency.data.datasets[0].data = [inf.p50, inf.p95, inf.p99];
  charts.latency.data.datasets[1].data = [e2e.p50, e2e.p95, e2e.p99];
  charts.latency.update("none");

  const types = Object.keys(s.dead_letters.by_type);
  charts.dead.data.labels = types;
  charts.dead.data.datasets[0].data = types.map((k) => s.dead_letters.by_type[k]);
  charts.dead.update("none");

  const body = $("top-risk").querySelector("tbody");
  body.replaceChildren(...s.top_risk.map((row, i) => {
    const tr = document.createElement("tr");
    const p = row.churn_probability;
    const cells = [String(i + 1), row.customerID, null, row.prediction || "", row.Contract || "…", row.InternetService || "…", (row.reasons || []).join(", "), (row.processed_ts || "").replace("T", " ").slice(0, 19)];
    cells.forEach((text, j) => {
      const td = document.createElement("td");
      if (j === 2) {
        td.className = "prob";
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${Math.round(60 * p)}px`;
        td.append(bar, document.createTextNode(p.toFixed(3)));
      } else {
        td.textContent = text;  // text, never HTML: ids come from the stream
      }
      tr.append(td);
    });
    return tr;
  }));

  const errors = s.errors && s.errors.length ? ` · last error: ${s.errors[s.errors.length - 1]}` : "";
  $("footer").textContent = `updated ${new Date(s.now * 1000).toLocaleTimeString()} · every ${refreshMs} ms · ${fmtInt(t.customers)} customers scored${errors}`;
}

async function tick() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    refreshMs = state.refresh_ms || refreshMs;
    render(state);
    failures = 0;
  } catch (err) {
    failures += 1;
    const status = $("status");
    status.className = "pill pill-down";
    status.textContent = "dashboard unreachable";
    console.error(err);
  }
  setTimeout(tick, failures ? Math.min(10000, refreshMs * (failures + 1)) : refreshMs);
}

tick();
