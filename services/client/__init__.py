"""The Python client of feedrank's Retriever and Feedback services.

    from services.client import Feedrank

    with Feedrank("127.0.0.1:50051", "127.0.0.1:50053", token="...") as client:
        results = client.search("scifact", "do statins lower the risk of dementia", top_k=5)
        for hit in results:
            print(hit.rank, hit.doc_id, f"{hit.rerank_score:.3f}", hit.title)
        results.click(results.hits[0].doc_id, dwell_ms=40_000)   # or .rate(doc_id, 5), .feedback(Click, Rating)

`AsyncFeedrank` is the same for asyncio (`await client.search(...)`, `await results.click(...)`).
Every call has a deadline covering its retries; UNAVAILABLE is retried with backoff, any other
failure is raised at once as a FeedrankError naming the field. Other languages: docs/api.md.
"""

from services.client.aio import AsyncFeedrank
from services.client.retry import Retry
from services.client.sync import Feedrank
from services.client.types import Click, Hit, Legs, Rating, Recorded, SearchResults

__all__ = ["AsyncFeedrank", "Click", "Feedrank", "Hit", "Legs", "Rating", "Recorded", "Retry", "SearchResults"]
