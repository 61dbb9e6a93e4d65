"""The web console in a real headless Chromium (Debian's, driven by Playwright) against the real stack.

Screenshots of each page are written under the test's tmp dir (`screenshots/`) as artifacts.
"""

from __future__ import annotations

import json
import uuid

import pytest

from services.common.config import TrainingSettings
from services.trainer.click_log import held_out
from tests.gateway.conftest import ADMIN_TOKEN, CHROMIUM_ARGS, CORPUS, chromium_path


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, errors  # no uncaught JavaScript error on any page


@pytest.fixture
def shots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def test_search_click_and_thumbs_down_reach_the_event_store(stack, page, shots):
    page.goto(f"{stack.url}/")
    page.wait_for_selector(f"#corpus option[value='{CORPUS}']", state="attached")
    page.fill("#query", "lava from a volcano")
    with page.expect_response(lambda r: r.url.endswith("/search")) as searched:
        page.click("#search-button")
    query_id = searched.value.json()["query_id"]
    page.wait_for_selector("ol.results li")
    items = page.locator("ol.results li")
    assert items.count() == 10
    first = items.nth(0)
    assert first.locator(".scores").inner_text().startswith("lexical ")
    assert "rerank" in first.locator(".scores").inner_text()
    clicked_doc = first.get_attribute("data-doc-id")
    page.screenshot(path=str(shots / "search.png"), full_page=True)

    posted: list[dict] = []
    page.on("request", lambda r: posted.append(r.post_data_json) if r.url.endswith("/api/telemetry/event") else None)
    first.locator(".result-title").click()
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_timeout(300)  # some dwell on the opened result
    page.screenshot(path=str(shots / "result.png"))
    with page.expect_response(lambda r: r.url.endswith("/api/telemetry/event")) as click_reply:
        page.click("#back")
    assert click_reply.value.status == 200

    second = items.nth(1)
    disliked_doc = second.get_attribute("data-doc-id")
    with page.expect_response(lambda r: r.url.endswith("/api/telemetry/event")) as rating_reply:
        second.locator(".thumb-down").click()
    assert rating_reply.value.status == 200
    page.wait_for_selector("ol.results li:nth-child(2) .thumb-down.sent")
    page.screenshot(path=str(shots / "feedback.png"), full_page=True)

    click, rating = posted
    store = stack.wait_for_events({click["event_id"], rating["event_id"]})
    try:
        stored_click, stored_rating = store.get(click["event_id"]), store.get(rating["event_id"])
    finally:
        store.close()
    assert stored_click.query_id == stored_rating.query_id == query_id
    assert stored_click.event.click.doc_id == clicked_doc and stored_click.event.click.rank == 1
    assert stored_click.event.click.dwell_ms >= 300
    assert (stored_rating.event.rating.doc_id, stored_rating.event.rating.rating,
            stored_rating.event.rating.rank) == (disliked_doc, 1, 2)
    assert stored_click.event.session_id == stored_rating.event.session_id != "anonymous"


def test_reranker_page_trains_and_charts_the_loss(stack, client, page, shots):
    # Feedback to learn from: a liked and a disliked result for a few queries.
    liked = set()
    # A session the click judge keeps for itself is never mined: rate from one that trains.
    share = TrainingSettings().judge_holdout_share
    session = next(s for s in (f"trainer-test-{i}" for i in range(100)) if not held_out(s, share))
    for query in ("cats purr and hunt mice", "interest rates and inflation", "sorting an array", "lava eruption"):
        reply = client.post("/search", json={"corpus_id": CORPUS, "query": query, "session_id": session,
                                             "rerank_mode": "none"}).json()
        for rank, rating in ((1, 5), (2, 1)):
            event_id = f"train-{uuid.uuid4().hex}"
            result = reply["results"][rank - 1]
            response = client.post("/api/telemetry/event", json={
                "event_id": event_id, "query_id": reply["query_id"], "doc_id": result["doc_id"], "rank": rank,
                "rating": rating, "session_id": session})
            assert response.status_code == 200, response.text
            liked.add(event_id)
    stack.wait_for_events(liked).close()

    page.goto(f"{stack.url}/ui/reranker.html")
    page.wait_for_selector("#champion .doc-id")
    champion = page.inner_text("#champion .doc-id")
    assert champion == client.get("/reranker/info").json()["aliases"]["champion"]
    page.screenshot(path=str(shots / "reranker.png"), full_page=True)

    page.fill("#corpus", CORPUS)
    page.fill("#token", ADMIN_TOKEN)
    page.dispatch_event("#token", "change")
    page.click("#mine")
    page.wait_for_function("document.querySelector('#result').textContent.startsWith('mine: ')", timeout=120_000)
    assert '"events"' in page.inner_text("#result")

    # The champion of the test registry was imported from ONNX without trainable weights: start from base.
    page.select_option("#start-from", "base")
    with page.expect_response(lambda r: r.url.endswith("/reranker/train")) as started:
        page.click("#train")
    run_id = started.value.json()["run_id"]
    # The loss chart fills from the run's SSE stream, and the stream's end shows the final status.
    page.wait_for_function("/succeeded|failed|cancelled|interrupted/.test(document.querySelector('#run-label').textContent)",
                           timeout=240_000)
    page.screenshot(path=str(shots / "reranker-trained.png"), full_page=True)
    assert "succeeded" in page.inner_text("#run-label"), page.inner_text("#run-label")
    assert int(page.get_attribute("#loss-chart", "data-points")) >= 1
    page.wait_for_function("document.querySelector('#logs').textContent.length > 0", timeout=10_000)

    # The run's version is the challenger; evaluate it, force it past the gate, then roll back.
    run = client.get(f"/reranker/train/run/{run_id}")
    assert run.status_code == 200, run.text
    version = run.json()["version_id"]
    page.wait_for_function(f"document.querySelector('#challenger .doc-id')?.textContent === '{version}'",
                           timeout=30_000)
    page.click("#evaluate")
    page.wait_for_function("document.querySelector('#result').textContent.startsWith('evaluate: ')", timeout=120_000)
    latest = client.get("/api/reranker/eval/latest").json()
    assert latest["challenger"]["version_id"] == version and latest["champion"]["version_id"] == champion
    page.wait_for_function(f"(document.querySelector('#versions-chart').dataset.versions || '').includes('{version}')",
                           timeout=15_000)
    page.screenshot(path=str(shots / "reranker-evaluated.png"), full_page=True)

    page.check("#force")
    page.click("#promote")
    page.wait_for_function("document.querySelector('#result').textContent.startsWith('promote: ')", timeout=60_000)
    assert '"promoted":true' in page.inner_text("#result"), page.inner_text("#result")
    page.wait_for_function(f"document.querySelector('#champion .doc-id')?.textContent === '{version}'", timeout=30_000)
    page.screenshot(path=str(shots / "reranker-promoted.png"), full_page=True)
    page.click("#rollback")
    page.wait_for_function("document.querySelector('#result').textContent.startsWith('rollback: ')", timeout=60_000)
    page.wait_for_function(f"document.querySelector('#champion .doc-id')?.textContent === '{champion}'", timeout=30_000)

    # The same run over plain HTTP: its SSE stream replays every metric, then ends with the status.
    with client.stream("GET", f"/reranker/train/run/{run_id}/metrics") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    frames = [dict(line.split(": ", 1) for line in frame.splitlines()) for frame in text.strip().split("\n\n")]
    losses = [json.loads(f["data"]) for f in frames if f["event"] == "metric" and '"loss"' in f["data"]]
    assert len(losses) == int(page.get_attribute("#loss-chart", "data-points"))
    assert frames[-1] == {"event": "end", "data": '{"status": "succeeded"}'}

    runs = client.get("/reranker/train/runs", params={"corpus_id": CORPUS}).json()["runs"]
    assert runs[0]["run_id"] == run_id and runs[0]["status"] == "succeeded"
    diff = client.get("/reranker/train/runs/diff", params={"a": run_id, "b": run_id}).json()
    assert diff["settings"] == {} and diff["metrics"]["train_loss"][0] == diff["metrics"]["train_loss"][1]
