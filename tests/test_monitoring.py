"""infra/monitoring.tf and infra/dashboards/queue.json, checked where a provider schema cannot
see: inside the free text. Every log filter must match a line that the functions really write
(captured from process and sweep runs here), with every field its labels and values extract;
every metric an alert or the dashboard names must be one infra/ defines (or a platform metric
listed below), with the labels it groups by; every alert carries a runbook line; and sweep's
absence alert waits three sweep intervals."""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
from pathlib import Path

import hcl2
import pytest

from shared.core import metrics, queue

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
PREFIX = "jobqueue"

# Metrics that Google Cloud defines (https://cloud.google.com/monitoring/api/metrics_gcp), with
# the labels the alerts and the dashboard may use.
PLATFORM_METRICS = {
    "run.googleapis.com/request_count": {"response_code", "response_code_class"},
    "run.googleapis.com/container/instance_count": {"state"},
    "cloudsql.googleapis.com/database/postgresql/num_backends": {"database"},
}


def plain(value):
    """python-hcl2's values without the quotes and escapes it keeps."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        return value
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items() if key not in ("__is_block__", "__comments__")}
    return value


@functools.lru_cache(maxsize=4)
def parse_hcl(text: str) -> dict:
    """Cached by the text: python-hcl2 takes about a second over monitoring.tf, and the checks
    below read it dozens of times."""
    return plain(hcl2.loads(text))


def monitoring_tf() -> dict:
    """A copy each time: a check that plants a defect in what it read changes no other's."""
    return copy.deepcopy(parse_hcl((INFRA / "monitoring.tf").read_text()))


def local_values() -> dict:
    found = {}
    for entry in monitoring_tf()["locals"]:
        found.update(entry)
    return found


def resources(type_name: str) -> dict:
    return {label: body for entry in monitoring_tf()["resource"] for label, body in entry.get(type_name, {}).items()}


def render(template: str, values: dict) -> str:
    """Substitute ${...}; an expression this test does not know fails it, loudly."""

    def one(match):
        expression = match.group(1)
        if expression not in values:
            raise KeyError(f"unknown expression ${{{expression}}} in {template[:80]!r}")
        return str(values[expression])

    return re.sub(r"\$\{([^{}]+)\}", one, template)


def scope(entry: dict | None = None, key: str | None = None) -> dict:
    """The values of the expressions monitoring.tf uses, for a deployment named PREFIX."""
    values = {
        "var.name_prefix": PREFIX,
        "var.project_id": "my-project",
        "local.log_metric_prefix": f"logging.googleapis.com/user/{PREFIX}",
        "local.sweep_interval_seconds": local_values()["sweep_interval_seconds"],
        "3 * local.sweep_interval_seconds": 3 * local_values()["sweep_interval_seconds"],
        "local.database_id": f"my-project:{PREFIX}-db",
    }
    values.update({f'google_cloudfunctions2_function.fn["{name}"].name': f"{PREFIX}-{name}" for name in FUNCTIONS})
    if entry is not None:
        values["each.key"] = key
        values.update({f"each.value.{name}": value for name, value in entry.items()})
        values["google_cloudfunctions2_function.fn[each.value.function].name"] = f"{PREFIX}-{entry['function']}"
    return values


FUNCTIONS = ("enqueue", "process", "status", "cancel", "sweep")


# -- a small evaluator for the logging filters used here ------------------------------------

TERM = re.compile(r'^([A-Za-z_][\w.]*)\s*(=|!=)\s*"((?:[^"\\]|\\.)*)"$')


def log_entry(function: str, line: dict) -> dict:
    """What Cloud Logging makes of a JSON line on a Cloud Run function's stdout."""
    payload = {key: value for key, value in line.items() if key != "severity"}
    return {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": f"{PREFIX}-{function}"}},
        "severity": line.get("severity"),
        "jsonPayload": payload,
    }


def lookup(entry: dict, path: str):
    value = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def matches(log_filter: str, entry: dict) -> bool:
    """`path="value"` terms joined by AND: the only logging-query syntax infra/ uses."""
    for term in log_filter.split(" AND "):
        found = TERM.match(term.strip())
        if not found:
            raise ValueError(f"filter term outside the checked subset: {term!r}")
        path, operator, expected = found.groups()
        equal = str(lookup(entry, path)) == expected.replace('\\"', '"')
        if equal != (operator == "="):
            return False
    return True


def extracted_field(extractor: str) -> str:
    found = re.fullmatch(r"EXTRACT\(jsonPayload\.([A-Za-z_]\w*)\)", extractor)
    assert found, f"extractor outside the checked subset: {extractor!r}"
    return found.group(1)


# -- the lines the code writes ---------------------------------------------------------------


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture
def written(make_client, session, registry, capsys) -> list[tuple[str, dict]]:
    """Every line process and sweep write while jobs complete, retry, fail, are cancelled and
    are swept, tagged with the function that wrote it."""
    from tests import handlers  # noqa: PLC0415

    process, sweep = make_client("process"), make_client("sweep")
    capsys.readouterr()
    done, _ = queue.enqueue(session, registry, kind="noop", payload={})
    retried, _ = queue.enqueue(session, registry, kind="fail_until", payload={"failures": 1}, max_attempts=2)
    failed, _ = queue.enqueue(session, registry, kind="fail_until", payload={"failures": 5}, max_attempts=1)
    for job_id in (done.id, retried.id, retried.id, failed.id):
        assert process.post("/", json={"id": job_id}).status_code == 200
    gate = f"monitoring-{time.monotonic_ns()}"
    cancelled, _ = queue.enqueue(session, registry, kind="wait_for_cancel", payload={"gate": gate})
    running = threading.Thread(target=lambda: process.post("/", json={"id": cancelled.id}))
    running.start()
    assert handlers.STARTED.setdefault(gate, threading.Event()).wait(15)
    queue.cancel(session, cancelled.id)
    running.join(15)
    lines = [("process", line) for line in log_lines(capsys.readouterr().out)]
    stalled, _ = queue.enqueue(session, registry, kind="noop", payload={})
    assert queue.claim_next(session).id == stalled.id
    session.run_sql("UPDATE jobs SET last_heartbeat = now() - interval '10 minutes' WHERE id = :id", id=stalled.id)
    assert sweep.post("/").get_json()["requeued"] == 1
    lines += [("sweep", line) for line in log_lines(capsys.readouterr().out)]
    outcomes = {line.get("outcome") for _, line in lines if line.get("event") == metrics.ENDED}
    assert outcomes == {"completed", "retrying", "failed", "cancelled"}
    return lines


def log_metrics() -> dict[str, dict]:
    """Every google_logging_metric, one per entry of its for_each map, with its rendered filter."""
    found = {}
    for resource_name, local_name in (("counter", "log_counters"), ("distribution", "log_distributions")):
        body = resources("google_logging_metric")[resource_name]
        assert body["for_each"] == f"${{local.{local_name}}}"
        assert (
            body["label_extractors"] == '${{for label in each.value.labels : label => "EXTRACT(jsonPayload.${label})"}}'
        )
        for key, entry in local_values()[local_name].items():
            values = scope(entry, key)
            found[render(body["name"], values)] = {
                "filter": render(body["filter"], values),
                "labels": list(entry["labels"]),
                "value": extracted_field(render(body["value_extractor"], values))
                if "value_extractor" in body
                else None,
                "distribution": resource_name == "distribution",
            }
    return found


def filter_problems(defined: dict[str, dict], lines: list[tuple[str, dict]]) -> list[str]:
    """What is wrong between the log-based metrics and the lines: a filter that matches no
    line, or a label or value field missing (or not a number) in a line it matches."""
    problems = []
    for name, metric in defined.items():
        matched = [entry for entry in (log_entry(fn, line) for fn, line in lines) if matches(metric["filter"], entry)]
        if not matched:
            problems.append(f"{name}: its filter matches no line the code writes: {metric['filter']}")
            continue
        for entry in matched:
            payload = entry["jsonPayload"]
            problems += [
                f"{name}: label {label!r} missing in {payload}" for label in metric["labels"] if label not in payload
            ]
            value = payload.get(metric["value"]) if metric["value"] else 0
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name}: value field {metric['value']!r} is not a number in {payload}")
    return problems


def test_every_log_filter_matches_a_line_the_code_writes(written):
    defined = log_metrics()
    assert len(defined) == 10
    assert filter_problems(defined, written) == []


def test_every_event_the_code_writes_for_metrics_is_read_by_one():
    read = {re.search(r'jsonPayload\.event="([^"]+)"', metric["filter"]).group(1) for metric in log_metrics().values()}
    assert read == set(metrics.EVENTS)


def test_the_filter_check_catches_a_filter_or_a_field_that_the_code_does_not_write(written):
    defined = log_metrics()

    def planted(name: str, **change) -> dict:
        return {name: {**defined[name], **change}}

    run_time = f"{PREFIX}/job_run_seconds"
    misspelt_event = defined[run_time]["filter"].replace("job.ended", "job.completed")
    wrong_function = defined[run_time]["filter"].replace(f"{PREFIX}-process", f"{PREFIX}-enqueue")
    assert filter_problems(planted(run_time, filter=misspelt_event), written)
    assert filter_problems(planted(run_time, filter=wrong_function), written)
    assert filter_problems(planted(run_time, value="runSecond"), written)
    assert filter_problems(planted(f"{PREFIX}/jobs_ended", labels=["kind", "status"]), written)
    assert filter_problems(planted(run_time, value="outcome"), written)  # a string, not a number
    with pytest.raises(ValueError, match="outside the checked subset"):
        matches('jsonPayload.event:"job"', {})


# -- the metrics the alerts and the dashboard name --------------------------------------------


def dashboard() -> dict:
    template = (INFRA / "dashboards" / "queue.json").read_text()
    body = resources("google_monitoring_dashboard")["queue"]
    assert body["dashboard_json"].startswith('${templatefile("${path.module}/dashboards/queue.json"')
    values = {
        "name_prefix": PREFIX,
        "metric_prefix": f"logging.googleapis.com/user/{PREFIX}",
        "database_id": f"my-project:{PREFIX}-db",
        "connection_limit": 25,
    }
    for name in values:  # the template gets exactly these
        assert re.search(rf"\b{name}\s*=", body["dashboard_json"]), name
    escaped = template.replace("$${", "\0")  # templatefile's escape for a literal ${
    return json.loads(render(escaped, {f"{k}": v for k, v in values.items()}).replace("\0", "${"))


def queries() -> list[tuple[str, str, dict]]:
    """(where, filter, aggregation) for every alert condition and dashboard chart."""
    found = []
    for name, policy in resources("google_monitoring_alert_policy").items():
        for condition in policy["conditions"]:
            for kind in ("condition_threshold", "condition_absent"):
                for spec in condition.get(kind, []):
                    aggregation = (spec.get("aggregations") or [{}])[0]
                    found.append((f"alert {name}", render(spec["filter"], scope()), aggregation))
                    if "denominator_filter" in spec:
                        denominator = spec["denominator_aggregations"][0]
                        found.append((f"alert {name}", render(spec["denominator_filter"], scope()), denominator))
    for tile in dashboard()["mosaicLayout"]["tiles"]:
        for data in tile["widget"]["xyChart"]["dataSets"]:
            series = data["timeSeriesQuery"]["timeSeriesFilter"]
            found.append((f"chart {tile['widget']['title']!r}", series["filter"], series["aggregation"]))
    return found


def reference_problems(found: list[tuple[str, str, dict]], defined: dict[str, dict]) -> list[str]:
    """A metric that neither infra/ nor the platform defines, a label it does not have, or a
    percentile of a metric that is not a distribution."""
    user = {f"logging.googleapis.com/user/{name}": metric for name, metric in defined.items()}
    problems = []
    for where, text, aggregation in found:
        named = re.findall(r'metric\.type="([^"]+)"', text)
        if len(named) != 1:
            problems.append(f"{where}: names {len(named)} metrics")
            continue
        metric_type = named[0]
        if metric_type in user:
            labels = set(user[metric_type]["labels"])
        elif metric_type in PLATFORM_METRICS:
            labels = PLATFORM_METRICS[metric_type]
        else:
            problems.append(f"{where}: {metric_type} is not defined in infra/ nor by the platform")
            continue
        used = re.findall(r"metric\.labels?\.(\w+)", text + " " + " ".join(aggregation.get("groupByFields", [])))
        used += re.findall(r"metric\.labels?\.(\w+)", " ".join(aggregation.get("group_by_fields", [])))
        problems += [f"{where}: {metric_type} has no label {label!r}" for label in used if label not in labels]
        reducer = aggregation.get("crossSeriesReducer") or aggregation.get("cross_series_reducer") or ""
        if "PERCENTILE" in reducer and not user.get(metric_type, {}).get("distribution"):
            problems.append(f"{where}: a percentile of {metric_type}, which is not a distribution")
    return problems


def test_every_metric_the_alerts_and_the_dashboard_name_is_defined():
    found = queries()
    assert len(found) >= 20
    assert reference_problems(found, log_metrics()) == []


def test_the_reference_check_catches_an_undefined_metric_a_missing_label_and_a_bad_percentile():
    defined = log_metrics()
    user = f"logging.googleapis.com/user/{PREFIX}"
    assert reference_problems([("x", f'metric.type="{user}/jobs_finished"', {})], defined)
    assert reference_problems([("x", 'metric.type="run.googleapis.com/request_latency"', {})], defined)
    assert reference_problems([("x", f'metric.type="{user}/jobs_started"', {"groupByFields": ["metric.label.outcome"]})], defined)  # fmt: skip
    assert reference_problems([("x", f'metric.type="{user}/jobs_ended"', {"crossSeriesReducer": "REDUCE_PERCENTILE_99"})], defined)  # fmt: skip
    assert not reference_problems([("x", f'metric.type="{user}/job_run_seconds"', {"crossSeriesReducer": "REDUCE_PERCENTILE_99"})], defined)  # fmt: skip


# -- alerts ----------------------------------------------------------------------------------


def test_the_alerts_the_issue_asks_for_each_with_a_runbook_line():
    policies = resources("google_monitoring_alert_policy")
    assert set(policies) == {
        "oldest_queued",
        "failure_ratio",
        "stalled_swept",
        "process_errors",
        "database_connections",
        "sweep_stopped",
    }
    for name, policy in policies.items():
        content = policy["documentation"][0]["content"]
        assert re.search(r"^\s*Runbook: \S", content, re.MULTILINE), name
        assert policy["notification_channels"] == "${local.alert_channels}", name
    channel = resources("google_monitoring_notification_channel")["email"]
    assert channel["count"] == '${var.alert_email == "" ? 0 : 1}' and channel["type"] == "email"
    assert local_values()["alert_channels"] == "${google_monitoring_notification_channel.email[*].id}"


def cron_interval_seconds(cron: str) -> int:
    """The interval of a `*/N * * * *` schedule."""
    found = re.fullmatch(r"\*/(\d+) \* \* \* \*", cron)
    assert found, f"not an every-N-minutes schedule: {cron!r}"
    return int(found.group(1)) * 60


def test_an_alert_fires_when_sweep_misses_three_ticks():
    schedules = {}
    for path in sorted(INFRA.glob("*.tf")):
        with open(path) as handle:
            for entry in plain(hcl2.load(handle)).get("locals", []):
                schedules.update(entry.get("schedules", {}))
    sweep = schedules["sweep"]
    interval = local_values()["sweep_interval_seconds"]
    assert interval == cron_interval_seconds(sweep["cron"] if isinstance(sweep, dict) else sweep) == 300
    condition = resources("google_monitoring_alert_policy")["sweep_stopped"]["conditions"][0]["condition_absent"][0]
    assert render(condition["duration"], scope()) == f"{3 * interval}s"
    assert f"logging.googleapis.com/user/{PREFIX}/sweep_ticks" in render(condition["filter"], scope())
    ticks = local_values()["log_counters"]["sweep_ticks"]
    assert (ticks["function"], ticks["event"]) == ("sweep", metrics.GAUGES)
    assert cron_interval_seconds("*/10 * * * *") == 600


def test_the_dashboard_draws_what_the_issue_lists():
    titles = " | ".join(tile["widget"]["title"] for tile in dashboard()["mosaicLayout"]["tiles"])
    for words in (
        "Throughput",
        "Queue depth",
        "Oldest queued",
        "Wait",
        "Run time",
        "instances",
        "Database connections",
    ):
        assert words in titles
    text = json.dumps(dashboard())
    for percentile in ("REDUCE_PERCENTILE_50", "REDUCE_PERCENTILE_95", "REDUCE_PERCENTILE_99"):
        assert text.count(percentile) == 2  # wait and run time


def test_the_dashboard_and_the_alert_aggregations_are_what_the_api_accepts():
    """The dashboard parses as the Dashboards API's own message (a misspelt field or enum
    value fails), and every aligner and reducer the alerts name is one of the API's."""
    from google.cloud.monitoring_dashboard_v1.types import Aggregation, Dashboard  # noqa: PLC0415
    from google.protobuf import json_format  # noqa: PLC0415

    parsed = json_format.Parse(json.dumps(dashboard()), Dashboard.pb()())
    assert len(parsed.mosaic_layout.tiles) == 9
    for right, wrong in (('"legendTemplate"', '"legendTemplat"'), ('"ALIGN_MEAN"', '"ALIGN_AVERAGE"')):
        with pytest.raises(json_format.ParseError):
            json_format.Parse(json.dumps(dashboard()).replace(right, wrong), Dashboard.pb()())
    for where, _, aggregation in queries():
        aligner = aggregation.get("per_series_aligner") or aggregation.get("perSeriesAligner")
        reducer = aggregation.get("cross_series_reducer") or aggregation.get("crossSeriesReducer")
        assert aligner in Aggregation.Aligner.__members__, where
        assert reducer in Aggregation.Reducer.__members__, where


def test_tracing_is_one_variable_away_in_google_cloud():
    """var.tracing sets TRACING=cloud-trace on every function (an empty value is off), enables
    the Telemetry API and lets each function's account write spans, and nothing when false."""
    from shared.core.settings import Settings  # noqa: PLC0415

    with open(INFRA / "main.tf") as handle:
        database_env = next(e["database_env"] for e in plain(hcl2.load(handle))["locals"] if "database_env" in e)
    assert database_env["TRACING"] == '${var.tracing ? "cloud-trace" : ""}'
    for value, mode in (("cloud-trace", "cloud-trace"), ("", None)):
        assert Settings.from_env({"DATABASE_URL": "postgresql://localhost/jobs", "TRACING": value}).tracing == mode
    api = resources("google_project_service")["telemetry"]
    assert (api["count"], api["service"]) == ("${var.tracing ? 1 : 0}", "telemetry.googleapis.com")
    writer = resources("google_project_iam_member")["traces_writer"]
    assert writer["for_each"] == "${var.tracing ? toset(keys(local.function_sizes)) : toset([])}"
    assert writer["role"] == "roles/telemetry.tracesWriter"
    assert writer["member"] == "serviceAccount:${google_service_account.fn[each.key].email}"
