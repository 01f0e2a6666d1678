"""make scale: the local stack with several process instances and 1,000 jobs running at once.

What it does, on a throwaway PostgreSQL (fast settings, like the tests; pg_stat_statements
loaded to count statements):

1. The wait phase: `--wait-jobs` jobs (default 100) on one instance whose handlers only
   wait (no progress, no ledger writes while they wait), with the default settings. Every
   statement the database runs over a 30 s window is counted (pg_stat_statements, the
   monitor's own excluded): transactions a second per running job and per instance.
2. The scale phase: `--jobs` ledger jobs (bench/ledger.py, default 1,000) of about
   `--job-seconds` (60) each, with progress every 5 s, sent at once to `--instances`
   process instances (10, each with THREADS above its share). `--cancel` (100) of them are
   cancelled through the cancel function at random moments; at 30 s one instance is
   SIGKILLed with its jobs running, and sweep (called every 5 s, STALLED_AFTER_SECONDS=40)
   requeues them for the surviving instances. A monitor samples, every second: jobs
   running, database connections (in total, and per instance from /proc), the oldest
   heartbeat of the running jobs (those of the killed instance excepted until swept) and
   each instance's resident memory.

It reports, into build/scale.json and the "Scale" section of docs/benchmarks.md: jobs
running at once, peak connections in total and per instance, transactions a second per
running job while handlers wait, heartbeat age (max), cancel latency p50/p99 (from the
cancel request on the row to the ledger's `stopped` row, both stamped by the database),
resident memory per running job beyond the instance's base, jobs lost (not finished by
the end) and jobs whose handler ran to completion twice (counted by the ledger).

    python -m bench.scale [--instances 10] [--jobs 1000] [--job-seconds 60] [--cancel 100]
"""
