"""An independent scraper: Python's urllib as the HTTP client, and the Prometheus
project's own text-format parser (prometheus-client from PyPI).

Usage: scrape.py BASE_URL. Prints one JSON object: `metrics` (family name -> type and
samples [name, labels, value]) from /metrics, and `health` (status code and JSON body)
from /health.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    base = sys.argv[1]
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        content_type = r.headers.get("Content-Type")
        text = r.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
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
