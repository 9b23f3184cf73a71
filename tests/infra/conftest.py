"""Collection rules for the infrastructure tests."""

import sys

# test_worker_indexing.py drives the Python 3.13 Functions worker (azure-functions-runtime, which
# requires 3.13 and is installed only there, requirements-dev.txt). On an older interpreter there
# is nothing for it to run, so it is not collected at all rather than shown as skipped; CI runs
# the suite on 3.13 too (.ci/run).
collect_ignore = ["test_worker_indexing.py"] if sys.version_info < (3, 13) else []
