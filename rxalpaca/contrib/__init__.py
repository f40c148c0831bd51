"""Integrations with operations tooling, each behind its own extra (layer 6).

* :mod:`rxalpaca.contrib.prometheus` — a Prometheus collector (``rxalpaca[prometheus]``).
* :mod:`rxalpaca.contrib.otel` — OpenTelemetry metrics and spans (``rxalpaca[otel]``).
* :mod:`rxalpaca.contrib.logs` — a JSON formatter for the structured log fields.
"""
