// Search page: results with each leg's score and the rerank score; clicks (with rank and dwell)
// and thumbs up/down go to POST /api/telemetry/event. Impressions are recorded by the retriever.
"use strict";

const sessionId = sessionStorage.getItem("feedrank.session") || newId();
sessionStorage.setItem("feedrank.session", sessionId);
let last = null;    // the last search response
let opened = null;  // {result, since}: the result being read; its click is sent when the reader leaves it

function telemetry(fields, beacon = false) {
  const event = { event_id: newId(), query_id: last.query_id, query: last.query, session_id: sessionId,
                  experiment_id: last.experiment_id || "", source: "web", timestamp: new Date().toISOString(),
                  ...fields };
  if (beacon && navigator.sendBeacon) {
    navigator.sendBeacon("/api/telemetry/event", new Blob([JSON.stringify(event)], { type: "application/json" }));
    return Promise.resolve();
  }
  return api("POST", "/api/telemetry/event", event);
}

function closeViewer(beacon = false) {
  if (!opened) return Promise.resolve();
  const { result, since } = opened;
  opened = null;
  document.getElementById("viewer").hidden = true;
  document.getElementById("results").hidden = false;
  return telemetry({ type: "click", doc_id: result.doc_id, rank: result.rank, dwell_ms: Math.round(performance.now() - since) }, beacon)
    .then(() => setStatus(`click on ${result.doc_id} recorded`))
    .catch((err) => setStatus(err.message, true));
}

function openResult(result) {
  opened = { result, since: performance.now() };
  document.getElementById("viewer-title").textContent = result.title || result.doc_id;
  document.getElementById("viewer-id").textContent = result.doc_id;
  document.getElementById("viewer-text").textContent = result.snippet;
  document.getElementById("viewer").hidden = false;
  document.getElementById("results").hidden = true;
}

function setStatus(text, error = false) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.className = error ? "error" : "meta";
}

function thumbs(result, rating, button) {
  telemetry({ type: "rating", doc_id: result.doc_id, rank: result.rank, rating })
    .then(() => { button.classList.add("sent"); setStatus(`rating ${rating} on ${result.doc_id} recorded`); })
    .catch((err) => setStatus(err.message, true));
}

function render(response) {
  const list = document.getElementById("results");
  list.replaceChildren();
  for (const r of response.results) {
    const legs = r.legs;
    const up = el("button", { type: "button", class: "thumb-up", title: "thumbs up: relevant" }, "▲ relevant");
    const down = el("button", { type: "button", class: "thumb-down", title: "thumbs down: not relevant" }, "▼ not relevant");
    up.addEventListener("click", () => thumbs(r, 5, up));
    down.addEventListener("click", () => thumbs(r, 1, down));
    list.append(el("li", { dataset: { docId: r.doc_id, rank: r.rank } },
      el("span", {}, `${r.rank}. `),
      el("button", { type: "button", class: "result-title", onclick: () => openResult(r) }, r.title || r.doc_id),
      el("span", { class: "doc-id" }, r.doc_id),
      el("div", { class: "snippet" }, r.snippet),
      el("div", { class: "scores" },
        `lexical ${fmt(legs.lexical_score)} (#${legs.lexical_rank || "-"}) · vector ${fmt(legs.vector_score)} ` +
        `(#${legs.vector_rank || "-"}) · fused ${fmt(legs.fused_score, 4)} (#${legs.fused_rank}) · rerank ${fmt(r.rerank_score)}`),
      el("div", { class: "thumbs" }, up, down)));
  }
  const t = response.timings;
  setStatus(`${response.results.length} results · model ${response.model_version || "none"}` +
            `${response.reranked ? " · reranked" : ""}${response.degraded_reason ? " · degraded: " + response.degraded_reason : ""}` +
            ` · ${fmt(t.total_ms || 0, 1)} ms · query_id ${response.query_id}`);
}

async function search(event) {
  event.preventDefault();
  await closeViewer();
  const body = { corpus_id: document.getElementById("corpus").value, query: document.getElementById("query").value,
                 session_id: sessionId };
  setStatus("searching…");
  try {
    last = { ...(await api("POST", "/search", body)), query: body.query };
    render(last);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function loadCorpora() {
  const select = document.getElementById("corpus");
  try {
    const { corpora } = await api("GET", "/corpora");
    select.replaceChildren(...corpora.map((c) => el("option", { value: c.corpus_id }, `${c.corpus_id} (${c.documents})`)));
  } catch (err) {
    setStatus(`cannot list corpora: ${err.message}`, true);
  }
}

document.getElementById("search-form").addEventListener("submit", search);
document.getElementById("back").addEventListener("click", () => closeViewer());
window.addEventListener("pagehide", () => closeViewer(true));
loadCorpora();
