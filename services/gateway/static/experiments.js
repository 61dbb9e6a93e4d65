// Reranker page, online experiment panel: the corpus's experiment (interleaving its champion and a
// challenger on live Search), its wins, losses and ties and p-value as credited, and start / stop.
"use strict";

function experimentCorpus() { return document.getElementById("corpus").value.trim(); }

function renderExperiment(e) {
  const label = document.getElementById("experiment-label");
  const box = document.getElementById("experiment");
  const counts = document.getElementById("experiment-counts");
  const pChart = document.getElementById("experiment-p");
  if (!e) {
    label.textContent = ""; box.textContent = "no experiment on this corpus";
    drawChart(counts, []); drawChart(pChart, []);
    return;
  }
  const queries = Number(e.wins) + Number(e.losses) + Number(e.ties);
  label.textContent = `${e.experiment_id} · ${e.state}`;
  box.replaceChildren(
    el("div", {}, `${e.challenger_version} (challenger) vs ${e.champion_version || "the fused order"} (champion) · `
      + `share ${fmt(e.share, 2)} · ` + (e.shadow ? "shadow: scored, never shown (see the retriever's feedrank_shadow_* metrics)"
        : `budget ${e.query_budget} · alpha ${e.alpha}`)),
    el("table", { class: "metrics" },
      el("tr", {}, ...["queries", "wins", "losses", "ties", "p-value"].map((h) => el("th", {}, h))),
      el("tr", { dataset: { state: e.state } }, el("td", {}, queries), el("td", {}, e.wins), el("td", {}, e.losses),
        el("td", {}, e.ties), el("td", {}, fmt(e.p_value, 4)))),
    el("div", {}, e.reason || ""));
  const points = (e.progress || []).map((p) => ({ q: Number(p.wins) + Number(p.losses) + Number(p.ties), ...p }));
  counts.dataset.points = String(points.length);
  drawChart(counts, ["wins", "losses", "ties"].map((name) => ({
    name, points: points.map((p) => ({ x: p.q, y: Number(p[name]) })) })), { xLabel: "credited queries" });
  drawChart(pChart, [{ name: "p-value", points: points.map((p) => ({ x: p.q, y: p.p_value })) }],
    { xLabel: "credited queries" });
}

async function refreshExperiment() {
  try {
    renderExperiment(await api("GET", `/api/trainer/experiments/${encodeURIComponent(experimentCorpus())}`));
  } catch (err) {
    if (err.message.startsWith("404")) renderExperiment(null);
    else document.getElementById("experiment").textContent = err.message;
  }
}

async function experimentAction(name, verb, body) {
  setStatus("result", `${name}…`);
  try {
    await api("POST", `/api/trainer/experiments/${encodeURIComponent(experimentCorpus())}/${verb}`, body);
    setStatus("result", `${name}: done`);
  } catch (err) {
    setStatus("result", `${name} failed: ${err.message}`, true);
  }
  await refreshExperiment();
}

document.getElementById("experiment-start").addEventListener("click", () => experimentAction(
  "start experiment", "start", { share: Number(document.getElementById("experiment-share").value) }));
document.getElementById("experiment-stop").addEventListener("click", () => experimentAction(
  "stop experiment", "stop", { reason: "stopped from the console" }));
refreshExperiment();
setInterval(refreshExperiment, 2000);  // live: the trainer credits queries as their click windows close
