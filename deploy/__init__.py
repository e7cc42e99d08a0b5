"""What a platform team deploys: the container image (``docker/``), the compose file
(``compose/``), the Helm chart (``helm/``), the topic spec (``kafka/topics.yaml``, shipped as
package data for ``pulse topics apply``), Prometheus rules and Grafana dashboards.

No Python lives here: the CLI is :mod:`ops`, the local development stack :mod:`devstack`,
the benchmark :mod:`bench`.
"""
