"""An independent scraper: Python's urllib as the HTTP client, and the Prometheus
project's own parser (prometheus-client from PyPI) for the format the server says it
sends: OpenMetrics text, or the older Prometheus text format.

Usage: scrape.py BASE_URL. Prints one JSON object: `metrics` (family name -> type and
samples [name, labels, value]) from /metrics, and `health` (status code and JSON body)
from /health.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families


def main() -> None:
    base = sys.argv[1]
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        content_type = r.headers.get("Content-Type")
        text = r.read().decode()
    families = {}
    parse = (
        openmetrics_families
        if content_type.startswith("application/openmetrics-text")
        else text_families
    )
    for family in parse(text):
        families[family.name] = {
            "type": family.type,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            health = {"code": r.status, "body": json.loads(r.read())}
    except urllib.error.HTTPError as e:
        health = {"code": e.code, "body": json.loads(e.read())}
    print(json.dumps({"content_type": content_type, "metrics": families, "health": health}))


if __name__ == "__main__":
    main()
