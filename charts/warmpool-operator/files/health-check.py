# `helm test`: the operator answers on its liveness endpoint through its Service. Run by the
# image's Python (`python -c`); HEALTH_URL comes from the test pod's environment.
import os
import sys
import time
import urllib.request

url = os.environ["HEALTH_URL"]
attempts = int(os.environ.get("HEALTH_ATTEMPTS", "30"))
problem = "no attempt"
for attempt in range(attempts):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                print(f"healthy: {url}")
                sys.exit(0)
            problem = f"HTTP {response.status}"
    except OSError as exc:
        problem = str(exc)
    if attempt + 1 < attempts:
        time.sleep(2)
sys.exit(f"unhealthy after {attempts} attempts: {url}: {problem}")
