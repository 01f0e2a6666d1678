"""What make scale measured: the run's figures, read from the database (final states, jobs
lost, cancel latencies, the ledger's runs and instance time) and from the monitor's samples."""

from __future__ import annotations

import statistics
import time

from bench import ledger
from bench.scale.monitor import MONITOR


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def summarise(monitor, ids, cancelled, assignment, victim, base_rss, seconds) -> dict:
    session = monitor.session
    states = dict(
        session.run_sql(
            f"{MONITOR} SELECT job_status, count(*) FROM jobs WHERE CAST(id AS text) = ANY(CAST(:ids AS text[]))"
            " GROUP BY job_status",
            ids=ids,
        )
    )
    lost = session.run_sql(
        f"{MONITOR} SELECT count(*) FROM jobs WHERE CAST(id AS text) = ANY(CAST(:ids AS text[]))"
        " AND job_status NOT IN ('completed', 'cancelled')",
        ids=ids,
    )[0][0]
    latencies = [
        float(row[0])
        for row in session.run_sql(
            f"{MONITOR} SELECT extract(epoch FROM min(l.at) - j.cancel_requested_at) FROM jobs j"
            f" JOIN {ledger.TABLE} l ON l.job_id = j.id AND l.event = 'stopped'"
            " WHERE CAST(j.id AS text) = ANY(CAST(:ids AS text[])) GROUP BY j.id, j.cancel_requested_at",
            ids=cancelled,
        )
    ]
    # Cloud Run bills an instance while it serves a request: from the first ledger row an
    # instance's worker wrote to its last (its jobs ran concurrently in between).
    busy = session.run_sql(
        f"{MONITOR} SELECT pid, extract(epoch FROM max(at) - min(at)) FROM {ledger.TABLE}"
        " WHERE CAST(job_id AS text) = ANY(CAST(:ids AS text[])) GROUP BY pid",
        ids=ids,
    )
    samples = [sample for sample in monitor.samples if sample["at"] >= time.time() - seconds - 5]
    per_instance_peak = max((max(sample["perInstance"]) for sample in samples), default=0)
    memory = []
    for index, instance in enumerate(monitor.instances):
        if instance is victim:
            continue
        jobs_here = sum(1 for job_id, owner in assignment.items() if owner is instance)
        peak = max((sample["rssMb"][index] for sample in samples), default=0)
        memory.append(round((peak - base_rss[instance.port]) / max(jobs_here, 1), 3))
    return {
        "jobs": len(ids),
        "instances": len(monitor.instances),
        "seconds": round(seconds, 1),
        "final": states,
        "runningAtOncePeak": max((sample["running"] for sample in samples), default=0),
        "connectionsPeak": max((sample["connections"] for sample in samples), default=0),
        "connectionsPerInstancePeak": per_instance_peak,
        "heartbeatAgeMaxSeconds": round(max((sample["oldestHeartbeat"] or 0 for sample in samples), default=0), 1),
        "cancelled": len(cancelled),
        "cancelLatencyP50Ms": round(1000 * percentile(latencies, 50)) if latencies else None,
        "cancelLatencyP99Ms": round(1000 * percentile(latencies, 99)) if latencies else None,
        "cancelSamples": len(latencies),
        "memoryPerJobMbMedian": round(statistics.median(memory), 3) if memory else None,
        "memoryPerJobMbMax": round(max(memory), 3) if memory else None,
        "memoryPerJobMbByInstance": memory,
        "lost": lost,
        "completedTwice": len([job for job in ledger.completed_more_than_once(session) if job in set(ids)]),
        "instanceSeconds": round(sum(float(seconds) for _, seconds in busy)),
        "runs": sum(runs for job, runs in ledger.runs_per_job(session).items() if job in set(ids)),
    }
