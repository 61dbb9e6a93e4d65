// Reranker page: champion/challenger, lifecycle buttons, the live loss chart (SSE), metrics by
// version and the newest run's log.
"use strict";

const corpus = () => document.getElementById("corpus").value.trim();
let loss = [];        // {x: step, y: loss} of the followed run
let stream = null;    // EventSource of the followed run

function setStatus(id, text, error = false) {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = error ? "error" : "meta";
}

function metricTable(metrics) {
  const rows = Object.entries(metrics || {}).sort();
  if (!rows.length) return el("div", { class: "meta" }, "no metrics recorded");
  return el("table", { class: "metrics" }, ...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, fmt(v, 4)))));
}

function renderModel(id, model) {
  const body = document.querySelector(`#${id} .body`);
  if (!model) { body.replaceChildren(el("div", { class: "meta" }, "none")); return; }
  body.replaceChildren(
    el("div", { class: "doc-id" }, model.version_id),
    el("div", { class: "meta" }, `base ${model.base_model || "?"} · run ${model.run_id || "-"} · loaded ${model.loaded_at || "no"}`),
    metricTable(model.metrics));
}

// Every corpus's own aliases as the reranker serves them; a corpus missing here uses the global ones.
function renderAliases(global, corpora) {
  const names = ["champion", "challenger", "previous"];
  const rows = [["(global)", global || {}], ...Object.entries(corpora || {}).sort()];
  document.getElementById("aliases").replaceChildren(el("table", { class: "metrics" },
    el("tr", {}, el("th", {}, "corpus"), ...names.map((n) => el("th", {}, n))),
    ...rows.map(([corpusId, aliases]) => el("tr", {}, el("td", {}, corpusId),
      ...names.map((n) => el("td", {}, aliases[n] || "-"))))));
}

async function refresh() {
  try {
    const status = await api("GET", `/reranker/status?corpus_id=${encodeURIComponent(corpus())}`);
    renderModel("champion", status.champion);
    renderModel("challenger", status.challenger);
    renderAliases(status.aliases, status.corpus_aliases);
    setStatus("status", `mode ${status.mode}` + (status.trainer_error ? ` · trainer: ${status.trainer_error}` : "") +
              (status.latest_run ? ` · latest run ${status.latest_run.run_id} (${status.latest_run.status})` : ""));
    if (status.latest_run && !stream && ["queued", "running"].includes(status.latest_run.status)) follow(status.latest_run.run_id);
  } catch (err) {
    setStatus("status", err.message, true);
  }
  try {
    const { versions } = await api("GET", `/api/reranker/evals/versions?corpus_id=${encodeURIComponent(corpus())}`);
    const series = ["ndcg@10", "mrr@10"].map((name) => ({
      name, points: versions.map((v, i) => ({ x: i + 1, y: v[name] })).filter((p) => p.y !== undefined) }));
    const canvas = document.getElementById("versions-chart");
    canvas.dataset.versions = versions.map((v) => v.version_id).join(",");
    drawChart(canvas, series, { xLabel: "version # (in order first evaluated)", yLabel: "score" });
  } catch (err) {
    drawChart(document.getElementById("versions-chart"), []);
  }
  await refreshLogs();
}

async function refreshLogs() {
  try {
    const { run_id, lines } = await api("GET", "/api/reranker/logs");
    document.getElementById("log-run").textContent = run_id ? `run ${run_id}` : "";
    document.getElementById("logs").textContent = lines.join("\n");
  } catch (err) {
    document.getElementById("logs").textContent = err.message;
  }
}

function follow(runId) {
  if (stream) stream.close();
  loss = [];
  document.getElementById("run-label").textContent = `run ${runId}`;
  drawChart(document.getElementById("loss-chart"), [{ name: "loss", points: loss }], { xLabel: "step" });
  stream = new EventSource(`/reranker/train/run/${encodeURIComponent(runId)}/metrics`);
  // A dropped connection is retried by EventSource and the trainer replays the run from its start.
  stream.addEventListener("open", () => { loss.length = 0; });
  stream.addEventListener("metric", (event) => {
    const m = JSON.parse(event.data);
    if (m.name === "loss") {
      loss.push({ x: Number(m.step), y: m.value });
      drawChart(document.getElementById("loss-chart"), [{ name: "loss", points: loss }], { xLabel: "step" });
      document.getElementById("loss-chart").dataset.points = String(loss.length);
    }
  });
  const finish = (event) => {
    stream.close(); stream = null;
    const data = event.data ? JSON.parse(event.data) : {};
    document.getElementById("run-label").textContent = `run ${runId} · ${data.status || data.message || "ended"}`;
    refresh();
  };
  stream.addEventListener("end", finish);
  stream.addEventListener("error", (event) => { if (event.data) finish(event); });
}

async function action(name, path, body) {
  setStatus("result", `${name}…`);
  try {
    const out = await api("POST", path, body);
    setStatus("result", `${name}: ${JSON.stringify(out)}`);
    if (out.run_id) follow(out.run_id);
    await refresh();
  } catch (err) {
    setStatus("result", `${name} failed: ${err.message}`, true);
  }
}

const token = document.getElementById("token");
token.value = localStorage.getItem("feedrank.adminToken") || "";
token.addEventListener("change", () => localStorage.setItem("feedrank.adminToken", token.value));
document.getElementById("mine").addEventListener("click", () => action("mine", "/reranker/mine", { corpus_id: corpus() }));
document.getElementById("train").addEventListener("click", () => action("train", "/reranker/train",
  { corpus_id: corpus(), start_from: document.getElementById("start-from").value }));
document.getElementById("evaluate").addEventListener("click", () => action("evaluate", "/reranker/evaluate", { corpus_id: corpus() }));
document.getElementById("promote").addEventListener("click", () => action("promote", "/api/reranker/promote",
  { corpus_id: corpus(), force: document.getElementById("force").checked }));
document.getElementById("rollback").addEventListener("click", () => action("rollback", "/api/reranker/rollback", { corpus_id: corpus() }));
refresh();
setInterval(refresh, 5000);  // the reranker swaps versions on its own schedule
