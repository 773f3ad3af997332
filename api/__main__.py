"""``python -m api``: run the API on API_HOST:API_PORT, metrics on METRICS_PORT."""

from api.app import main

main()
