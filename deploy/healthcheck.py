"""Container health check: exit 0 if the URL answers 2xx within 4 s, else 1 with the reason.

`python deploy/healthcheck.py [URL]`; the default is the API's liveness on $PORT (5000). The image's
HEALTHCHECK and docker-compose.yml's checks call it with arguments free of spaces, which every
engine passes through unchanged (podman 4.3 splits a CMD argument that holds spaces).
"""

import os
import sys
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else f"http://127.0.0.1:{os.environ.get('PORT', '5000')}/health"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        status = response.status
except Exception as exc:  # noqa: BLE001  (any failure is the answer: unhealthy)
    sys.exit(f"unhealthy: {url}: {exc}")
sys.exit(0 if 200 <= status < 300 else f"unhealthy: {url} answered {status}")
